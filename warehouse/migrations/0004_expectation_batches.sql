-- Per-batch validations (suites validated once per ingest batch) record the batch they covered, so
-- "validated yet?" is remembered per batch even when the asset is not the batch itself: the
-- quarantine_rate suite's asset is the source, whose latest batch decides whether it is healthy.
alter table expectation_runs add column batch_id varchar;  -- NULL for suites validated whole
