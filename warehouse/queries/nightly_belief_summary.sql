-- nightly_belief_summary: beliefs per key family as the snapshot would hold them (decayed to the data
-- as-of), how many users they cover, and how many are enrichable (at or above $threshold).
-- Inputs: view `decayed_beliefs` (the rows of snapshot_beliefs). Parameters: $threshold
with

decayed as (
    select user_id, split_part(key, '@', 1) as family, confidence from decayed_beliefs
),

per_family as (
    select
        family,
        count(*) as beliefs,
        count(distinct user_id) as users,
        count(*) filter (where confidence >= $threshold) as enrichable,
        count(distinct user_id) filter (where confidence >= $threshold) as enrichable_users,
        round(avg(confidence), 3) as mean_confidence
    from decayed
    group by family
),

final as (
    select * from per_family
)

select * from final order by family
