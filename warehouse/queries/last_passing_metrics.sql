-- last_passing_metrics: the metrics of the suite's last passing run other than $run_id (the "before" an
-- alert shows beside a failing value).
-- Parameters: $suite, $run_id
select metrics
from eval_runs
where suite = $suite and passed and run_id <> $run_id
order by started_at desc
limit 1
