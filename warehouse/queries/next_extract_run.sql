-- next_extract_run: the number of the next extraction run (rule extractors' batches and LLM observations).
select greatest(coalesce((select max(extract_run) from extracted_batches), 0),
                coalesce((select max(extract_run) from llm_observed), 0)) + 1
