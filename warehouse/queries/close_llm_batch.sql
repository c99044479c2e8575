-- close_llm_batch: a batch's results are stored (or it ended without them).
-- Parameters: $batch_id, $status, $collected_at
update llm_batches set status = $status, collected_at = $collected_at where batch_id = $batch_id
