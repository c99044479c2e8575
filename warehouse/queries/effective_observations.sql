-- effective_observations (a fragment, included as {{effective_observations}} by the queries that compute
-- confidence): the observations of the caller's CTE `scope` (every column kept) with the weight the belief
-- model gives them, `effective_weight` (docs/reference.md "Belief model"): the extracted weight * the fitted weight of
-- their evidence kind * the family's repeat discount ^ (earlier observations of the same user, key and value
-- from the same unit, by time, then event id, then weight). Families without a discount skip the ranking,
-- which costs a sort of their observations. `scope` must hold every earlier observation of each group it holds.
-- An observation extracted before evidence kinds were recorded (migration 0009) is of kind "<extractor>:",
-- as calibration_evidence.sql names it when it fits the weights.
-- Inputs: CTE scope (observation columns), Arrow tables key_policies, kind_weights.
select s.*, p.cardinality, p.half_life_days, p.prior, s.weight * coalesce(w.weight, 1.0) as effective_weight
from scope as s
join key_policies as p on p.family = split_part(s.key, '@', 1)
left join kind_weights as w on w.family = p.family and w.kind = coalesce(s.evidence_kind, s.extractor || ':')
where p.repeat_discount = 1.0

union all

select
    s.*, p.cardinality, p.half_life_days, p.prior,
    s.weight * coalesce(w.weight, 1.0)
        * pow(p.repeat_discount, row_number() over (
              partition by s.user_id, s.key, s.value, coalesce(s.evidence_unit, 'event|' || s.event_id)
              order by s.observed_at, s.event_id, s.weight) - 1) as effective_weight
from scope as s
join key_policies as p on p.family = split_part(s.key, '@', 1)
left join kind_weights as w on w.family = p.family and w.kind = coalesce(s.evidence_kind, s.extractor || ':')
where p.repeat_discount < 1.0
