-- insert_extracted_batch: remember that a batch's events have been through the extractors.
-- Parameters: $batch_id, $extract_run, $extractor_set, $observations, $extracted_at
insert into extracted_batches (batch_id, extract_run, extractor_set, observations, extracted_at)
values ($batch_id, $extract_run, $extractor_set, $observations, $extracted_at)
