-- insert_calibration_adoption: put a calibration in force (NULL: the config's own values).
-- Parameters: $adopted_at, $calibration_id, $reason
insert into calibration_adoptions values ($adopted_at, $calibration_id, $reason)
