-- next_extract_run: the number of the next extraction run.
select coalesce(max(extract_run), 0) + 1 from extracted_batches
