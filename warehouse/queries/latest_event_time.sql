-- latest_event_time: the newest occurred_at in the warehouse (the default as-of of a refresh).
select max(occurred_at) from events
