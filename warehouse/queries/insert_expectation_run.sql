-- insert_expectation_run: record one validation of one suite against one asset.
-- Parameters: one per column.
insert into expectation_runs
    (validation_id, suite, asset, validated_at, success, blocking_failures, warnings, evaluated, data_docs, batch_id)
values
    ($validation_id, $suite, $asset, $validated_at, $success, $blocking_failures, $warnings, $evaluated,
     $data_docs, $batch_id)
