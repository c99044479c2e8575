-- quality_events_batch: the events one ingest batch loaded, as the events_batch suite checks them.
-- Besides the stored columns: copies_in_source (stored events with this source and event_id anywhere in
-- the warehouse; must be 1), rating_is_finite (NULL or a finite number: pandas reads NaN as missing, so
-- it is told apart here), reply_to_found (the event a reply or feedback names is stored).
-- Parameters: $batch_id
with batch_events as (
    select event_id, user_id, occurred_at, kind, text, rating, reply_to, source, batch_id, is_late
    from events
    where batch_id = $batch_id
),

copies as (
    select source, event_id, count(*) as copies_in_source
    from events
    where (source, event_id) in (select (source, event_id) from batch_events)
    group by source, event_id
),

reply_targets as (
    select distinct source, event_id
    from events
    where (source, event_id) in (select (source, reply_to) from batch_events where reply_to is not null)
),

final as (
    select
        b.*,
        c.copies_in_source,
        b.rating is null or isfinite(b.rating) as rating_is_finite,
        b.reply_to is null or t.event_id is not null as reply_to_found
    from batch_events as b
    left join copies as c on c.source = b.source and c.event_id = b.event_id
    left join reply_targets as t on t.source = b.source and t.event_id = b.reply_to
)

select * from final
