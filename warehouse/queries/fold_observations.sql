-- fold_observations: the new state, at $as_of, of every (user, key) that has observations not yet counted
-- (every group when $all_groups: no previous state, or the parameters changed), recomputed from all of its observations (README
-- "Belief model"), so an incremental refresh equals a full one under any parameters.
-- Already counted = extract_run <= $prev_watermark and observed_at <= $prev_as_of (one rectangle,
-- because both bounds only grow between full refreshes). A full refresh passes no previous state.
-- Inputs: table `observations`, Arrow tables key_policies, kind_weights, value_base_rates.
-- Parameters: $as_of, $watermark, $prev_as_of, $prev_watermark, $all_groups
with

counted as (
    select user_id, key, value, weight, observed_at, event_id, extractor, evidence_kind, evidence_unit,
           not (extract_run <= coalesce($prev_watermark, -1)
                and observed_at <= coalesce($prev_as_of, '-infinity'::timestamptz)) as is_new
    from observations
    where extract_run <= $watermark and observed_at <= $as_of
),

touched_groups as (
    select distinct user_id, key from counted where is_new
),

scope as (
    -- every group when there is no previous state or the parameters changed; else the touched ones
    select * from counted where $all_groups
    union all
    select c.* from counted as c semi join touched_groups as g using (user_id, key) where not $all_groups
),

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
