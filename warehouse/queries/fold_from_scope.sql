-- fold_from_scope (a fragment, included as {{fold_from_scope}} after the caller's CTE `scope`, which holds
-- observation columns and `is_new`): the CTEs that fold `scope` into the new state of its (user, key) groups
-- at $as_of, then `select * from final` (docs/reference.md "Belief model"). Included by fold_observations (the groups with
-- new observations) and fold_all_observations (every group): one home for what a fold computes.
-- Inputs: CTE scope, Arrow tables key_policies, kind_weights, value_base_rates. Parameters: $as_of
weighted as (
{{effective_observations}}
),

evidence as (
    select
        w.user_id, w.key, w.value, any_value(w.cardinality) as cardinality, any_value(w.prior) as prior,
        sum(belief_decay(w.effective_weight, w.observed_at, $as_of, w.half_life_days)) as decayed_evidence,
        count(*) as evidence_count,
        count(*) filter (where w.is_new) as new_count,  -- observations this refresh adds
        min(w.observed_at) as first_seen,
        max(w.observed_at) as last_evidence_at
    from weighted as w
    group by w.user_id, w.key, w.value
),

confidence as (
{{belief_confidence}}
),

final as (
    select
        user_id, key, value, confidence, evidence_count, new_count, decayed_evidence, first_seen,
        last_evidence_at, $as_of::timestamptz as as_of
    from confidence
)

select * from final
