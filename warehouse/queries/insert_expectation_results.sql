-- insert_expectation_results: one row per expectation of a validation (Arrow table `new_results`).
-- Parameters: $validation_id
insert into expectation_results (validation_id, expectation, severity, success, unexpected_count, details)
select $validation_id, expectation, severity, success, unexpected_count, details::json
from new_results
