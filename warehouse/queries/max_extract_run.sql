-- max_extract_run: the newest extraction run whose observations exist (rule extractors' batches and LLM
-- observations).
select greatest(coalesce((select max(extract_run) from extracted_batches), 0),
                coalesce((select max(extract_run) from llm_observed), 0))
