-- parameter_set_weights: a recorded parameter set's evidence-kind weights. Parameters: $parameter_set
select family, kind, weight from evidence_weights where parameter_set = $parameter_set order by family, kind
