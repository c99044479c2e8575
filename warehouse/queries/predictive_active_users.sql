-- predictive_active_users: users with evidence in the window (cutoff, horizon_end] and the highest
-- confidence any of their beliefs had at the cutoff (NULL for users unknown then).
-- Only the window's observations from $source count (all sources when it is null).
-- Parameters: $cutoff, $horizon_end, $source
with

active as (
    select distinct user_id
    from observations
    where observed_at > $cutoff and observed_at <= $horizon_end
      and ($source is null or source = $source)
),

best as (
    select user_id, max(confidence) as max_confidence from beliefs_at_cutoff group by user_id
),

final as (
    select a.user_id, b.max_confidence
    from active as a
    left join best as b using (user_id)
)

select * from final order by user_id
