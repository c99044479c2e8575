-- insert_observations: store extracted observations (Arrow table `new_observations`).
-- Parameters: $extract_run
insert into observations
select user_id, key, value, weight, observed_at, event_id, source, extractor, extractor_version, batch_id,
       $extract_run as extract_run
from new_observations
