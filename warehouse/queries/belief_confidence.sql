-- belief_confidence (a fragment, included as {{belief_confidence}}): confidence per (user, key, value) from
-- the caller's CTE `evidence` (user_id, key, value, cardinality, prior, decayed_evidence, ...), with the
-- family's base rate and calibration map (docs/reference.md "Belief model"; the belief_* macros of migration 0009).
-- A key's totals are summed over its values for one-valued keys only (many-valued ones do not need them).
-- Inputs: CTE evidence, Arrow tables key_policies, value_base_rates.
with

key_totals as (
    select user_id, key, sum(decayed_evidence) as key_total
    from evidence
    where cardinality = 'one'
    group by user_id, key
),

mapped as (
    select
        e.*,
        belief_mapped(belief_raw(e.cardinality, e.decayed_evidence, t.key_total, e.prior, coalesce(r.base_rate, 0.0)),
                      p.map_a, p.map_b, p.map_c) as mapped,
        p.map_a = 1.0 and p.map_b = 1.0 and p.map_c = 0.0 as map_is_identity
    from evidence as e
    join key_policies as p on p.family = split_part(e.key, '@', 1)
    left join value_base_rates as r on r.family = p.family and r.value = e.value
    left join key_totals as t on t.user_id = e.user_id and t.key = e.key
),

mapped_totals as (
    -- only where a map could make a one-valued key's values claim certainty together
    select user_id, key, sum(mapped) as mapped_total
    from mapped
    where cardinality = 'one' and not map_is_identity
    group by user_id, key
)

select m.* exclude (map_is_identity), belief_final(m.cardinality, m.mapped, t.mapped_total) as confidence
from mapped as m
left join mapped_totals as t on t.user_id = m.user_id and t.key = m.key
