-- fold_observations: the new state of every (user, key) that has observations not yet counted,
-- at $as_of (README "Belief model"). Old state is moved to $as_of by its decay factor, new
-- observations are added with theirs, and confidence is recomputed over all values of the key.
-- Already counted = extract_run <= $prev_watermark and observed_at <= $prev_as_of (one rectangle,
-- because both bounds only grow between full refreshes). A full refresh passes no previous state.
-- Inputs: tables `beliefs`, `observations`, Arrow table `key_policies` (family, cardinality,
-- half_life_days, prior). Parameters: $as_of, $watermark, $prev_as_of, $prev_watermark

with

policies as (
    select family, cardinality, half_life_days, prior from key_policies
),

new_observations as (
    select o.user_id, o.key, o.value, o.weight, o.observed_at, p.half_life_days
    from observations as o
    join policies as p on p.family = split_part(o.key, '@', 1)
    where o.extract_run <= $watermark
      and o.observed_at <= $as_of
      and not (o.extract_run <= coalesce($prev_watermark, -1)
               and o.observed_at <= coalesce($prev_as_of, '-infinity'::timestamptz))
),

new_evidence as (
    select
        user_id, key, value,
        sum(weight * pow(2.0, -((epoch_us($as_of) - epoch_us(observed_at)) / 86400e6) / half_life_days))
            as decayed_evidence,
        count(*) as evidence_count,
        min(observed_at) as first_seen,
        max(observed_at) as last_evidence_at
    from new_observations
    group by user_id, key, value
),

touched_groups as (
    select distinct user_id, key from new_evidence
),

carried_evidence as (
    select
        b.user_id, b.key, b.value,
        b.decayed_evidence * pow(2.0, -((epoch_us($as_of) - epoch_us(b.as_of)) / 86400e6) / p.half_life_days)
            as decayed_evidence,
        b.evidence_count, b.first_seen, b.last_evidence_at
    from beliefs as b
    join touched_groups as g using (user_id, key)
    join policies as p on p.family = split_part(b.key, '@', 1)
),

merged as (
    select
        user_id, key, value,
        sum(decayed_evidence) as decayed_evidence,
        sum(evidence_count) as evidence_count,
        sum(new_count) as new_count,
        min(first_seen) as first_seen,
        max(last_evidence_at) as last_evidence_at
    from (select *, 0 as new_count from carried_evidence
          union all
          select *, evidence_count as new_count from new_evidence)
    group by user_id, key, value
),

final as (
    select
        m.user_id,
        m.key,
        m.value,
        case when p.cardinality = 'one'
             then m.decayed_evidence / (sum(m.decayed_evidence) over (partition by m.user_id, m.key) + p.prior)
             else m.decayed_evidence / (m.decayed_evidence + p.prior)
        end as confidence,
        m.evidence_count,
        m.new_count,  -- observations this refresh adds
        m.decayed_evidence,
        m.first_seen,
        m.last_evidence_at,
        $as_of::timestamptz as as_of
    from merged as m
    join policies as p on p.family = split_part(m.key, '@', 1)
)

select * from final
