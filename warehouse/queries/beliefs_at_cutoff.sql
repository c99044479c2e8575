-- beliefs_at_cutoff: every user's beliefs recomputed from the observations made up to $cutoff
-- (what a refresh at the cutoff would have believed). Used by the predictive eval.
-- Inputs: Arrow table `key_policies`. Parameters: $cutoff
with

policies as (
    select family, cardinality, half_life_days, prior from key_policies
),

evidence as (
    select
        o.user_id, o.key, o.value, p.cardinality, p.prior,
        sum(o.weight * pow(2.0, -((epoch_us($cutoff) - epoch_us(o.observed_at)) / 86400e6) / p.half_life_days))
            as decayed_evidence
    from observations as o
    join policies as p on p.family = split_part(o.key, '@', 1)
    where o.observed_at <= $cutoff
    group by o.user_id, o.key, o.value, p.cardinality, p.prior
),

final as (
    select
        user_id, key, value, cardinality,
        case when cardinality = 'one'
             then decayed_evidence / (sum(decayed_evidence) over (partition by user_id, key) + prior)
             else decayed_evidence / (decayed_evidence + prior) end as confidence
    from evidence
)

select * from final
