-- last_refresh_parameter_set: the parameter set the beliefs in force were folded with (as last_refresh).
select parameter_set
from refresh_runs
where superseded_at is null
order by as_of desc, started_at desc
limit 1
