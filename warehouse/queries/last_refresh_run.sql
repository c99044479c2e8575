-- last_refresh_run: the refresh whose state the beliefs hold, with when it ended (for eval freshness).
-- Same choice as last_refresh: the newest as-of among the runs not superseded by a full refresh or backfill.
select refresh_id, as_of, ended_at
from refresh_runs
where superseded_at is null
order by as_of desc, started_at desc
limit 1
