-- parameter_set_families: a recorded parameter set's key policies. Parameters: $parameter_set
select family, cardinality, half_life_days, prior, repeat_discount, map_a, map_b, map_c, calibration_id
from belief_parameters
where parameter_set = $parameter_set
order by family
