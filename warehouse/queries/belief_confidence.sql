-- belief_confidence (a fragment, included as {{belief_confidence}}): confidence per (user, key, value) from
-- the caller's CTE `evidence` (user_id, key, value, cardinality, prior, decayed_evidence, ...), with the
-- family's base rate and calibration map (README "Belief model"; the belief_* macros of migration 0009).
-- Sums over a key's values add in value order, so every run gives the same digits.
-- Inputs: CTE evidence, Arrow tables key_policies, value_base_rates.
select
    e.*,
    belief_final(e.cardinality, mapped,
                 sum(mapped) over (partition by e.user_id, e.key order by e.value
                                   rows between unbounded preceding and unbounded following)) as confidence
from (
    select
        e.*,
        belief_mapped(
            belief_raw(e.cardinality, e.decayed_evidence,
                       sum(e.decayed_evidence) over (partition by e.user_id, e.key order by e.value
                                                     rows between unbounded preceding and unbounded following),
                       e.prior, coalesce(r.base_rate, 0.0)),
            p.map_a, p.map_b, p.map_c) as mapped
    from evidence as e
    join key_policies as p on p.family = split_part(e.key, '@', 1)
    left join value_base_rates as r on r.family = p.family and r.value = e.value
) as e
