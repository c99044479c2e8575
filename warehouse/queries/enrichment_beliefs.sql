-- enrichment_beliefs: the beliefs the online reader would serve at the cutoff (temp table beliefs_at_cutoff) to
-- each of $users: at or above $threshold, in the snapshot's order (most confident first, ties by key and value).
-- Parameters: $users (list of user ids), $threshold
with

final as (
    select user_id, key, value, confidence
    from beliefs_at_cutoff
    where confidence >= $threshold and list_contains($users, user_id)
)

select * from final order by user_id, confidence desc, key, value
