-- close_history: end the history rows in force for the (user, key) groups in `folded`.
-- Parameters: $as_of
update belief_history
set valid_to = $as_of
where valid_to is null
  and (user_id, key) in (select distinct user_id, key from folded)
