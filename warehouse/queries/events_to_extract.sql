-- events_to_extract: events of ingest batches not yet run through the extractors ($everything: all
-- events, for a full refresh). A feedback event comes with the event it rates (its reply_to, same
-- source), which is what feedback is evidence about.
-- Parameters: $everything
with

pending_events as (
    select *
    from events
    where $everything or batch_id not in (select batch_id from extracted_batches)
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
        e.attributes ->> 'post_type' as post_type,
        e.attributes ->> 'vote_type' as vote_type,
        t.user_id as target_user_id,
        t.kind as target_kind,
        t.text as target_text,
        t.tags as target_tags,
        t.attributes ->> 'post_type' as target_post_type
    from pending_events as e
    left join events as t
        on e.kind = 'feedback' and t.source = e.source and t.event_id = e.reply_to
)

select * from final
