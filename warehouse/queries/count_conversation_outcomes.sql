-- count_conversation_outcomes: count_outcomes for format chat (Arrow table `classified`, the output of
-- chat_conversation_outcomes.sql): records are conversations, counted by record_outcome; events_loaded and
-- late_events count the events the loaded conversations became.
select
    count(record_outcome) as rows_read,
    count(*) filter (where record_outcome = 'load') as loaded,
    count(*) filter (where record_outcome = 'duplicate') as duplicates,
    count(*) filter (where record_outcome = 'quarantine') as quarantined,
    count(*) filter (where is_late) as late_events,
    count(*) filter (where outcome = 'load') as events_loaded
from classified
