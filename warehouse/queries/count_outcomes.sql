-- count_outcomes: how many records of the current chunk (temp table `classified`) went where.
select
    count(*) as rows_read,
    count(*) filter (where outcome = 'load') as loaded,
    count(*) filter (where outcome = 'duplicate') as duplicates,
    count(*) filter (where outcome = 'quarantine') as quarantined,
    count(*) filter (where is_late) as late_events
from classified
