-- close_all_history: a full refresh ends every history row in force (at the later of its start and $as_of).
-- Parameters: $as_of
update belief_history
set valid_to = greatest(valid_from, $as_of)
where valid_to is null
