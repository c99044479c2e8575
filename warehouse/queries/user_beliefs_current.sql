-- user_beliefs_current: a user's stored beliefs moved to $at (>= their as_of) by the decay factor,
-- so a group untouched since an older refresh shows the confidence it has now.
-- Inputs: Arrow table `key_policies`. Parameters: $user_id, $at
with

policies as (
    select family, cardinality, half_life_days, prior from key_policies
),

stored as (
    select
        b.*,
        p.cardinality,
        p.prior,
        b.decayed_evidence * pow(2.0, -((epoch_us($at) - epoch_us(b.as_of)) / 86400e6) / p.half_life_days)
            as evidence_now
    from beliefs as b
    join policies as p on p.family = split_part(b.key, '@', 1)
    where b.user_id = $user_id
),

final as (
    select
        key, value,
        case when cardinality = 'one'
             then evidence_now / (sum(evidence_now) over (partition by key) + prior)
             else evidence_now / (evidence_now + prior) end as confidence,
        evidence_count, evidence_now as decayed_evidence, first_seen, last_evidence_at
    from stored
)

select * from final order by confidence desc, key, value
