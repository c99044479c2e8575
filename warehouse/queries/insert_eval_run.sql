-- insert_eval_run: one evaluation of one suite. Parameters: one per column.
insert into eval_runs
    (run_id, suite, started_at, ended_at, passed, metrics, bar, regressions, data_as_of, code_version, config_hash)
values
    ($run_id, $suite, $started_at, $ended_at, $passed, $metrics, $bar, $regressions, $data_as_of, $code_version,
     $config_hash)
