-- Calibration layer (README "Calibration"): the parameters each refresh folded with, every calibration
-- fitted from the warehouse's own history, which one is in force, and the belief formula as macros that the
-- `beliefs` view, the fold and the read queries share.

-- What each observation is evidence of, for the fitted weights: "<extractor>:<kind>" (topic:tag,
-- expertise:accept, style:thumbs_down...), and the unit repeated evidence is counted within (post|<id>,
-- session|<id>, event|<id>). NULL for observations extracted before this migration (`refresh --full`
-- re-extracts them): such an observation is its own unit and its kind is "<extractor>:".
alter table observations add column evidence_kind varchar;
alter table observations add column evidence_unit varchar;

-- A parameter set: per key family what turns evidence into confidence (model.py). Identified by a hash
-- of its content, written once, referenced by the refreshes that folded with it.
create table belief_parameters (
    parameter_set   varchar not null,
    family          varchar not null,
    cardinality     varchar not null,  -- one | many
    half_life_days  double  not null,
    prior           double  not null,
    repeat_discount double  not null,  -- d in (0, 1]
    map_a           double  not null,  -- beta calibration map; (1, 1, 0) is the identity
    map_b           double  not null,
    map_c           double  not null,
    calibration_id  varchar            -- the calibration these came from; NULL: the config's own values
);

create table evidence_weights (
    parameter_set varchar not null,
    family        varchar not null,
    kind          varchar not null,
    weight        double  not null  -- multiplies the extracted weight; kinds not listed: 1
);

create table base_rates (
    parameter_set varchar not null,
    family        varchar not null,
    value         varchar not null,
    base_rate     double  not null  -- pi: how often the value holds across users; values not listed: 0
);

alter table refresh_runs add column parameter_set varchar;
alter table refresh_runs add column calibration_id varchar;

-- Every `selfmodel calibrate` that wrote something (a dry run writes nothing).
create table calibration_runs (
    calibration_id     varchar primary key,
    started_at         timestamptz not null,
    ended_at           timestamptz not null,
    data_as_of         timestamptz not null,  -- the newest event the fit could see
    train_from         timestamptz not null,  -- earliest training cutoff
    train_to           timestamptz not null,  -- end of the last training window
    validation_from    timestamptz not null,
    validation_to      timestamptz not null,  -- end of the last validation window
    evaluation_from    timestamptz not null,  -- the evaluation's earliest cutoff: nothing after it was read
    parameters         json        not null,  -- per family: before and fitted (half-life, prior, weights, map...)
    figures            json        not null,  -- per family: train and validation log loss, ECE, judged
    adopted            boolean     not null,  -- at least one family's fit improved validation log loss
    families_adopted   varchar[]   not null,
    config_hash        varchar     not null,
    code_version       varchar     not null
);

-- Which calibration is in force: the newest row. calibration_id NULL means the config's own values.
create table calibration_adoptions (
    adopted_at     timestamptz not null,
    calibration_id varchar,
    reason         varchar     not null  -- calibrate | rollback to <snapshot version> | reset
);

-- The belief formula (selfmodel/beliefs/model.py), one home for every query that computes confidence.
create macro belief_decay(evidence, from_time, to_time, half_life_days) as
    evidence * pow(2.0, -((epoch_us(to_time) - epoch_us(from_time)) / 86400e6) / half_life_days);

-- raw confidence: key_total is the sum of S over the (user, key)'s values (used by one-valued keys)
create macro belief_raw(cardinality, evidence, key_total, prior, base_rate) as
    case when cardinality = 'one'
         then (evidence + prior * base_rate) / (key_total + prior)
         else (evidence + prior * base_rate) / (evidence + prior) end;

create macro belief_sigmoid(z) as
    case when z >= 0 then 1.0 / (1.0 + exp(-z)) else exp(z) / (1.0 + exp(z)) end;

create macro belief_clip(x) as greatest(least(x, 1.0 - 1e-12), 1e-12);

-- the beta calibration map; (1, 1, 0) is the identity and returns raw untouched
create macro belief_mapped(raw, map_a, map_b, map_c) as
    case when map_a = 1.0 and map_b = 1.0 and map_c = 0.0 then raw
         else belief_sigmoid(map_a * ln(belief_clip(raw)) - map_b * ln(1.0 - belief_clip(raw)) + map_c) end;

-- a one-valued key's mapped values never together claim certainty: key_mapped_total is their sum
create macro belief_final(cardinality, mapped, key_mapped_total) as
    case when cardinality = 'one' and key_mapped_total > 1.0 - 1e-9
         then mapped * (1.0 - 1e-9) / key_mapped_total
         else mapped end;

-- Current beliefs: the history rows in force, their evidence moved to the latest refresh's as-of and their
-- confidence computed there with that refresh's parameters, so a (user, key) no refresh touched since
-- reads what a full recompute would give (README "Belief model"). Rows of a warehouse refreshed before this
-- migration keep their stored confidence until the next refresh re-folds them.
create or replace view beliefs as
with

latest as (
    select as_of, parameter_set
    from refresh_runs
    where superseded_at is null
    order by as_of desc, started_at desc
    limit 1
),

in_force as (
    select
        h.user_id, h.key, h.value, h.confidence as stored_confidence, h.evidence_count, h.decayed_evidence,
        h.first_seen, h.last_evidence_at, h.valid_from,
        l.as_of as latest_as_of, p.cardinality, p.prior, p.map_a, p.map_b, p.map_c,
        coalesce(r.base_rate, 0.0) as base_rate,
        belief_decay(h.decayed_evidence, h.valid_from, l.as_of, p.half_life_days) as evidence_now
    from belief_history as h
    left join latest as l on true
    left join belief_parameters as p
        on p.parameter_set = l.parameter_set and p.family = split_part(h.key, '@', 1)
    left join base_rates as r
        on r.parameter_set = l.parameter_set and r.family = p.family and r.value = h.value
    where h.valid_to is null
),

raw as (
    select
        *,
        belief_mapped(
            belief_raw(cardinality, evidence_now,
                       sum(evidence_now) over (partition by user_id, key order by value
                                               rows between unbounded preceding and unbounded following),
                       prior, base_rate),
            map_a, map_b, map_c) as mapped
    from in_force
),

final as (
    select
        user_id, key, value,
        coalesce(belief_final(cardinality, mapped,
                              sum(mapped) over (partition by user_id, key order by value
                                                rows between unbounded preceding and unbounded following)),
                 stored_confidence) as confidence,
        evidence_count,
        coalesce(evidence_now, decayed_evidence) as decayed_evidence,
        first_seen, last_evidence_at,
        case when evidence_now is null then valid_from else latest_as_of end as as_of
    from raw
)

select * from final;
