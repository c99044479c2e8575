-- last_refresh_run: the refresh whose state the beliefs hold, with when it ended (for eval freshness).
select refresh_id, as_of, ended_at
from refresh_runs
order by started_at desc, as_of desc
limit 1
