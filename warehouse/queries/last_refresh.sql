-- last_refresh: the refresh whose state the beliefs table holds (as-ofs of the runs not superseded
-- only grow, so the newest as-of is the last; the start time breaks ties).
select as_of, extract_run_watermark
from refresh_runs
where superseded_at is null
order by as_of desc, started_at desc
limit 1
