-- beliefs_at_cutoff: every user's beliefs recomputed from the observations made up to $cutoff
-- (what a refresh at the cutoff would have believed, with the parameters registered). Used by the
-- predictive eval. Inputs: Arrow tables key_policies, kind_weights, value_base_rates. Parameters: $cutoff
with

scope as (
    select * from observations where observed_at <= $cutoff
),

weighted as (
{{effective_observations}}
),

evidence as (
    select
        user_id, key, value, any_value(cardinality) as cardinality, any_value(prior) as prior,
        sum(belief_decay(effective_weight, observed_at, $cutoff, half_life_days)) as decayed_evidence
    from weighted
    group by user_id, key, value
),

confidence as (
{{belief_confidence}}
),

final as (
    select user_id, key, value, cardinality, confidence from confidence
)

select * from final
