-- insert_folded_beliefs: the new state of the touched (user, key) groups becomes current.
insert into beliefs
select user_id, key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at, as_of
from folded
