-- open_history: the new state of the touched (user, key) groups is in force from $as_of; through the
-- `beliefs` view it is also the current state.
-- Parameters: $as_of
insert into belief_history
select user_id, key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at,
       $as_of as valid_from, null as valid_to
from folded
