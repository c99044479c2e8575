-- last_refresh: the refresh whose state the beliefs table holds.
select as_of, extract_run_watermark
from refresh_runs
order by started_at desc, as_of desc
limit 1
