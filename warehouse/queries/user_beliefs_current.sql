-- user_beliefs_current: a user's beliefs in force, as the `beliefs` view computes them at the latest
-- refresh's as-of (a group untouched since an older refresh shows the confidence it has now).
-- Parameters: $user_id
select key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at
from beliefs
where user_id = $user_id
order by round(confidence, 12) desc, key, value  -- as a snapshot orders them (equal beliefs by key and value)
