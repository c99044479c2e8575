-- rewind_history: forget what was believed from $as_of on (rows that came into force then or later)
-- and end every row still in force at $as_of there, so a fold from scratch at $as_of continues the
-- history as if the refreshes after $as_of had never run. Used by the first night of a backfill.
-- Parameters: $as_of
delete from belief_history where valid_from >= $as_of;
update belief_history
set valid_to = $as_of
where valid_to is null or valid_to > $as_of
