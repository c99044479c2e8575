-- insert_refresh_run: record a refresh. Parameters: one per column named.
insert into refresh_runs (refresh_id, as_of, mode, extract_run_watermark, started_at, ended_at, observations_folded,
                          groups_touched, beliefs_total, config_hash, code_version, parameter_set, calibration_id)
values ($refresh_id, $as_of, $mode, $extract_run_watermark, $started_at, $ended_at, $observations_folded,
        $groups_touched, $beliefs_total, $config_hash, $code_version, $parameter_set, $calibration_id)
