-- insert_llm_batch: a batch submitted to the Batch API, with the message texts (by hash) it asks about.
-- Parameters: $batch_id, $run_id, $model, $prompt_version, $text_hashes, $submitted_at, $status
insert into llm_batches (batch_id, run_id, model, prompt_version, text_hashes, submitted_at, status)
values ($batch_id, $run_id, $model, $prompt_version, $text_hashes, $submitted_at, $status)
