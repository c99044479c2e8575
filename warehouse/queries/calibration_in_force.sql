-- calibration_in_force: the newest adoption, with its calibration's record (NULL id: the config's values).
select a.calibration_id, a.adopted_at, a.reason, c.parameters, c.families_adopted
from calibration_adoptions as a
left join calibration_runs as c using (calibration_id)
order by a.adopted_at desc
limit 1
