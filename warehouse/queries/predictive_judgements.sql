-- predictive_judgements: each belief held at the cutoff (temp table beliefs_at_cutoff) whose key the user's
-- next window (cutoff, horizon_end] says something about, and whether it held: for a one-value key, the
-- value is the window's best-supported value; for a many-value key, the value is observed in the window.
-- Only the window's observations from $source count (all sources when it is null).
-- Parameters: $cutoff, $horizon_end, $source
with

window_support as (
    select user_id, key, value, round(sum(weight), 9) as support  -- rounded: a float sum in any order, ties stay ties
    from observations
    where observed_at > $cutoff and observed_at <= $horizon_end
      and ($source is null or source = $source)
    group by user_id, key, value
),

window_best as (
    -- ties go to the smallest value, so the verdict is deterministic
    select user_id, key, value as best_value
    from window_support
    qualify row_number() over (partition by user_id, key order by support desc, value) = 1
),

history as (
    select user_id,
           count(*) filter (where kind = 'message') as prior_interactions,
           min(occurred_at) as first_seen
    from events
    where occurred_at <= $cutoff
    group by user_id
),

final as (
    select
        b.user_id,
        b.key,
        b.value,
        b.confidence,
        case when b.cardinality = 'one' then b.value = w.best_value
             else s.value is not null end as holds,
        coalesce(h.prior_interactions, 0) as prior_interactions,
        coalesce((epoch_us($cutoff) - epoch_us(h.first_seen)) / 86400e6, 0) as days_known
    from beliefs_at_cutoff as b
    join window_best as w using (user_id, key)
    left join window_support as s on s.user_id = b.user_id and s.key = b.key and s.value = b.value
    left join history as h using (user_id)
)

select * from final order by user_id, key, value
