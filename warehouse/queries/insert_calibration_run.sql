-- insert_calibration_run: record a calibration. Parameters: one per column.
insert into calibration_runs values (
    $calibration_id, $started_at, $ended_at, $data_as_of, $train_from, $train_to, $validation_from, $validation_to,
    $evaluation_from, $parameters, $figures, $adopted, $families_adopted, $config_hash, $code_version)
