-- snapshot_beliefs: every belief in force as the `beliefs` view computes it at the latest refresh's as-of
-- (the snapshot's data as-of), at or above $min_confidence, in the snapshot's order: by user, most
-- confident first (ties by key and value, so the order is total). Parameters: $min_confidence
with

scored as (
    select user_id, key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at
    from beliefs
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
