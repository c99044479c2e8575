-- calibration_base_rates: per key family and value, in how many of the training windows' judged
-- (cutoff, user, key) groups the value held, and how many groups there were: the population base rate.
-- Inputs: Arrow tables calibration_cutoffs, key_policies. Parameters: $fit_end, $source
with

window_support as (
    select c.cutoff, o.user_id, o.key, o.value, round(sum(o.weight), 9) as support  -- rounded: a float sum in any order, ties stay ties
    from observations as o
    join calibration_cutoffs as c on o.observed_at > c.cutoff and o.observed_at <= c.horizon_end
    where c.split = 'train' and o.observed_at <= $fit_end and ($source is null or o.source = $source)
    group by all
),

held as (
    -- a many-valued value holds when observed; a one-valued one when it is the best supported (ties: smallest)
    select w.cutoff, w.user_id, w.key, w.value, p.family
    from window_support as w
    join key_policies as p on p.family = split_part(w.key, '@', 1)
    qualify p.cardinality = 'many'
         or row_number() over (partition by w.cutoff, w.user_id, w.key order by w.support desc, w.value) = 1
),

groups as (
    select p.family, count(distinct (w.cutoff, w.user_id, w.key)) as groups
    from window_support as w
    join key_policies as p on p.family = split_part(w.key, '@', 1)
    group by p.family
),

final as (
    select h.family, h.value, count(*) as held, any_value(g.groups) as groups
    from held as h
    join groups as g using (family)
    group by h.family, h.value
)

select * from final order by family, value
