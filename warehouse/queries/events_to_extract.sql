-- events_to_extract: events of ingest batches not yet run through the extractors ($everything: all
-- events, for a full refresh). A feedback event comes with the event it rates (its reply_to, same
-- source), which is what feedback is evidence about.
-- Feedback extracted before the event it rates had arrived saw no target; when that event arrives in a
-- pending batch, the feedback is queued again with `target_arrived`, and only what the target adds is
-- kept (selfmodel.beliefs.observe), so an incremental refresh equals a full one whatever the order.
-- Memory: this feeds a temp table of every pending event (10 M at scale), so nothing here may hold whole
-- events in memory. Only keys are shared between the parts (a CTE used twice is materialised in memory,
-- and does not spill), and only feedback is joined to its target, from the targets alone.
-- Parameters: $everything
with

extracted as (
    select batch_id from extracted_batches
),

pending_keys as (
    select source, event_id
    from events
    where not $everything and batch_id not in (select batch_id from extracted)
),

feedback_whose_target_arrived as (
    select f.*, true as target_arrived
    from events as f
    semi join pending_keys as t on t.source = f.source and t.event_id = f.reply_to
    where not $everything and f.kind = 'feedback' and f.batch_id in (select batch_id from extracted)
),

queued_events as not materialized (
    select *, false as target_arrived
    from events
    where $everything or batch_id not in (select batch_id from extracted)
    union all
    select * from feedback_whose_target_arrived
),

rated_keys as (
    select distinct source, reply_to as event_id
    from queued_events
    where kind = 'feedback' and reply_to is not null
),

targets as (
    select
        t.source,
        t.event_id,
        t.user_id,
        t.kind,
        t.text,
        t.tags,
        t.attributes ->> 'post_type' as post_type
    from events as t
    semi join rated_keys as r on r.source = t.source and r.event_id = t.event_id
),

final as (
    select
        e.event_id,
        e.user_id,
        e.source,
        e.batch_id,
        e.kind,
        e.text,
        e.tags,
        e.rating,
        e.occurred_at,
        e.session_id,
        e.reply_to,
        e.attributes ->> 'post_type' as post_type,
        e.attributes ->> 'vote_type' as vote_type,
        t.user_id as target_user_id,
        t.kind as target_kind,
        t.text as target_text,
        t.tags as target_tags,
        t.post_type as target_post_type,
        e.target_arrived
    from queued_events as e
    left join targets as t
        on e.kind = 'feedback' and t.source = e.source and t.event_id = e.reply_to
)

select * from final
