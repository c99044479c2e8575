-- user_beliefs_as_of: a user's beliefs recomputed from only the observations made at or before $at
-- (the definition of "what the evidence said then", whatever was refreshed when).
-- Inputs: Arrow table `key_policies`. Parameters: $user_id, $at
with

policies as (
    select family, cardinality, half_life_days, prior from key_policies
),

evidence as (
    select
        o.key, o.value, p.cardinality, p.prior,
        sum(o.weight * pow(2.0, -((epoch_us($at) - epoch_us(o.observed_at)) / 86400e6) / p.half_life_days))
            as decayed_evidence,
        count(*) as evidence_count,
        min(o.observed_at) as first_seen,
        max(o.observed_at) as last_evidence_at
    from observations as o
    join policies as p on p.family = split_part(o.key, '@', 1)
    where o.user_id = $user_id and o.observed_at <= $at
    group by o.key, o.value, p.cardinality, p.prior
),

final as (
    select
        key, value,
        case when cardinality = 'one'
             then decayed_evidence / (sum(decayed_evidence) over (partition by key) + prior)
             else decayed_evidence / (decayed_evidence + prior) end as confidence,
        evidence_count, decayed_evidence, first_seen, last_evidence_at
    from evidence
)

select * from final order by confidence desc, key, value
