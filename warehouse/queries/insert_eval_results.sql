-- insert_eval_results: per case or slice metric values of a run (Arrow table `new_eval_results`).
-- Parameters: $run_id, $suite
insert into eval_results
select $run_id as run_id, $suite as suite, case_id, metric, value from new_eval_results
