-- eval_data_as_of: the data an eval run is about: the newest event, no later than $as_of when given.
-- Parameters: $as_of
select max(occurred_at) from events where $as_of is null or occurred_at <= $as_of
