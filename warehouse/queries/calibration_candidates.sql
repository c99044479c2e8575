-- calibration_candidates: every belief a refresh at each calibration cutoff would have held whose key the
-- window after the cutoff says something about, and whether it held there (as predictive_judgements
-- judges: a one-valued belief holds if its value is the window's best-supported one, a many-valued belief
-- if its value is observed in the window). Reads nothing observed after $fit_end.
-- Inputs: Arrow tables calibration_cutoffs (cutoff, horizon_end, split), key_policies.
-- Parameters: $fit_end, $source
with

visible as (
    select user_id, key, value, weight, observed_at, source
    from observations
    where observed_at <= $fit_end
),

window_support as (
    select c.cutoff, o.user_id, o.key, o.value, round(sum(o.weight), 9) as support  -- rounded: a float sum in any order, ties stay ties
    from visible as o
    join calibration_cutoffs as c on o.observed_at > c.cutoff and o.observed_at <= c.horizon_end
    where $source is null or o.source = $source
    group by all
),

window_best as (
    -- ties go to the smallest value, so the verdict is deterministic
    select cutoff, user_id, key, value as best_value
    from window_support
    qualify row_number() over (partition by cutoff, user_id, key order by support desc, value) = 1
),

believed as (
    select distinct c.cutoff, o.user_id, o.key, o.value
    from visible as o
    join calibration_cutoffs as c on o.observed_at <= c.cutoff
),

final as (
    select
        c.split, b.cutoff, b.user_id, b.key, b.value, p.family,
        case when p.cardinality = 'one' then b.value = w.best_value else s.value is not null end as holds
    from believed as b
    join window_best as w using (cutoff, user_id, key)
    join calibration_cutoffs as c using (cutoff)
    join key_policies as p on p.family = split_part(b.key, '@', 1)
    left join window_support as s
        on s.cutoff = b.cutoff and s.user_id = b.user_id and s.key = b.key and s.value = b.value
)

select *, row_number() over (order by family, cutoff, user_id, key, value) - 1 as belief_index
from final
