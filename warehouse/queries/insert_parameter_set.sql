-- insert_parameter_set: record a parameter set from the Arrow tables new_key_policies, new_kind_weights
-- and new_value_base_rates. Parameters: $parameter_set, $calibration_id
insert into belief_parameters
select $parameter_set, family, cardinality, half_life_days, prior, repeat_discount, map_a, map_b, map_c,
       $calibration_id
from new_key_policies;

insert into evidence_weights select $parameter_set, family, kind, weight from new_kind_weights;

insert into base_rates select $parameter_set, family, value, base_rate from new_value_base_rates;
