-- max_extract_run: the newest extraction run whose observations exist.
select coalesce(max(extract_run), 0) from extracted_batches
