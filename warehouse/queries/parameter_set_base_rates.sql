-- parameter_set_base_rates: a recorded parameter set's base rates. Parameters: $parameter_set
select family, value, base_rate from base_rates where parameter_set = $parameter_set order by family, value
