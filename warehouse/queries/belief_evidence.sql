-- belief_evidence: the observations and events behind a user's beliefs, newest first.
-- Parameters: $user_id, $at
select
    o.key, o.value, o.weight, o.observed_at, o.extractor, o.extractor_version, o.event_id, o.source,
    e.kind as event_kind, left(replace(e.text, chr(10), ' '), 160) as event_text
from observations as o
left join events as e on e.source = o.source and e.event_id = o.event_id
where o.user_id = $user_id and o.observed_at <= $at
order by o.key, o.value, o.observed_at desc
