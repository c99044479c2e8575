-- count_outcomes: how many records of the current chunk (temp table `classified`) went where; one record is one
-- event here, so events_loaded = loaded (format chat counts with count_conversation_outcomes).
select
    count(*) as rows_read,
    count(*) filter (where outcome = 'load') as loaded,
    count(*) filter (where outcome = 'duplicate') as duplicates,
    count(*) filter (where outcome = 'quarantine') as quarantined,
    count(*) filter (where is_late) as late_events,
    count(*) filter (where outcome = 'load') as events_loaded
from classified
