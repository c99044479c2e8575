-- snapshot_beliefs: every belief in force, its evidence moved to $at (the snapshot's data as-of) by its
-- key family's half-life exactly as user_beliefs_current does for one user, at or above $min_confidence,
-- in the snapshot's order: by user, most confident first (ties by key and value, so the order is total).
-- Inputs: Arrow table `key_policies`. Parameters: $at, $min_confidence
with

policies as (
    select family, cardinality, half_life_days, prior from key_policies
),

stored as (
    select
        b.user_id, b.key, b.value, b.evidence_count, b.first_seen, b.last_evidence_at,
        p.cardinality,
        p.prior,
        b.decayed_evidence * pow(2.0, -((epoch_us($at) - epoch_us(b.as_of)) / 86400e6) / p.half_life_days)
            as evidence_now
    from beliefs as b
    join policies as p on p.family = split_part(b.key, '@', 1)
),

scored as (
    select
        user_id, key, value,
        -- The window is ordered so the sum adds in the same order on every run (identical content hashes).
        case when cardinality = 'one'
             then evidence_now / (sum(evidence_now) over (
                      partition by user_id, key order by value
                      rows between unbounded preceding and unbounded following) + prior)
             else evidence_now / (evidence_now + prior) end as confidence,
        evidence_count, evidence_now as decayed_evidence, first_seen, last_evidence_at
    from stored
),

rounded as (
    -- 12 significant digits: the same beliefs reached by another path (a backfill folds from scratch
    -- what nightly runs folded step by step) differ by ~1e-15 relative, which would change the content
    -- hash of an otherwise identical snapshot. Confidence is below 1, so 12 decimals are 12 digits or more.
    select
        user_id, key, value,
        round(confidence, 12) as confidence,
        evidence_count,
        case when decayed_evidence > 0
             then round(decayed_evidence, 11 - cast(floor(log10(decayed_evidence)) as integer))
             else decayed_evidence end as decayed_evidence,
        first_seen, last_evidence_at
    from scored
),

final as (
    select * from rounded where confidence >= $min_confidence
)

select * from final order by user_id, confidence desc, key, value
