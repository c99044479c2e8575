-- user_beliefs_as_of: a user's beliefs recomputed from only the observations made at or before $at
-- (the definition of "what the evidence said then", whatever was refreshed when).
-- Inputs: Arrow tables key_policies, kind_weights, value_base_rates. Parameters: $user_id, $at
with

scope as (
    select * from observations where user_id = $user_id and observed_at <= $at
),

weighted as (
{{effective_observations}}
),

evidence as (
    select
        user_id, key, value, any_value(cardinality) as cardinality, any_value(prior) as prior,
        sum(belief_decay(effective_weight, observed_at, $at, half_life_days)) as decayed_evidence,
        count(*) as evidence_count,
        min(observed_at) as first_seen,
        max(observed_at) as last_evidence_at
    from weighted
    group by user_id, key, value
),

confidence as (
{{belief_confidence}}
),

final as (
    select key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at
    from confidence
)

select * from final order by confidence desc, key, value
