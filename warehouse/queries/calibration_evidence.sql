-- calibration_evidence: the observations behind each calibration candidate (temp table
-- calibration_candidates): age at the candidate's cutoff, extracted weight, evidence kind, and rank among
-- the earlier observations of the same user, key and value from the same unit (effective_observations
-- orders them the same way). Reads nothing observed after $fit_end. Parameters: $fit_end
with

ranked as (
    select
        user_id, key, value, weight, observed_at,
        coalesce(evidence_kind, extractor || ':') as kind,
        row_number() over (
            partition by user_id, key, value, coalesce(evidence_unit, 'event|' || event_id)
            order by observed_at, event_id, weight) - 1 as unit_rank
    from observations
    where observed_at <= $fit_end
),

final as (
    select
        c.family, c.belief_index,
        (epoch_us(c.cutoff) - epoch_us(o.observed_at)) / 86400e6 as age_days,
        o.weight, o.kind, o.unit_rank, o.observed_at
    from calibration_candidates as c
    join ranked as o
        on o.user_id = c.user_id and o.key = c.key and o.value = c.value and o.observed_at <= c.cutoff
)

select * from final order by family, belief_index, age_days, weight, kind, unit_rank  -- a total order: the same sums, digit for digit
