-- insert_observations: store extracted observations (Arrow table `new_observations`).
-- Parameters: $extract_run
insert into observations by name
select user_id, key, value, weight, observed_at, event_id, source, extractor, extractor_version, batch_id,
       $extract_run as extract_run, evidence_kind, evidence_unit
from new_observations
