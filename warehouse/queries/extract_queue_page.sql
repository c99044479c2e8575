-- extract_queue_page: one page of the temp table extract_queue (built from events_to_extract).
-- Parameters: $first, $last (row numbers, inclusive)
select * exclude (queue_row)
from extract_queue
where queue_row between $first and $last
