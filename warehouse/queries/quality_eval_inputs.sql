-- quality_eval_inputs: every observation the evals read, as the eval_inputs suite checks them.
-- Besides the stored columns: key_family (expertise@qubit -> expertise) and has_event (the event it was
-- drawn from is still stored; `forget` deletes both together).
with stored_observations as (
    select user_id, key, value, weight, observed_at, event_id, source, extractor, extractor_version
    from observations
),

stored_events as (
    select distinct source, event_id
    from events
),

final as (
    select
        o.*,
        split_part(o.key, '@', 1) as key_family,
        e.event_id is not null as has_event
    from stored_observations as o
    left join stored_events as e on e.source = o.source and e.event_id = o.event_id
)

select * from final
