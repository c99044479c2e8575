-- reset_observations: a full refresh re-runs the extractors over every event.
delete from observations;
delete from extracted_batches;
delete from llm_observed;
