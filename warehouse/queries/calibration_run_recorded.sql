-- calibration_run_recorded: whether this warehouse recorded calibration $calibration_id (calibration_runs).
-- Parameters: $calibration_id
select count(*) > 0 from calibration_runs where calibration_id = $calibration_id
