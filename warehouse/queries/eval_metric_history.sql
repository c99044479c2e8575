-- eval_metric_history: one metric of one suite over its runs, oldest first (for trend charts).
-- Parameters: $suite, $metric, $limit
select started_at, passed, try_cast(metrics ->> $metric as double) as value, run_id
from (select * from eval_runs where suite = $suite order by started_at desc limit $limit)
order by started_at
