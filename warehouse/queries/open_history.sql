-- open_history: record the new state of the touched groups as in force from $as_of.
-- Parameters: $as_of
insert into belief_history
select user_id, key, value, confidence, evidence_count, decayed_evidence, last_evidence_at,
       $as_of as valid_from, null as valid_to
from folded
