-- predictive_data_end: the newest occurred_at the predictive eval counts from (of one source, or of all when
-- $source is null), no later than $as_of when given (evaluating a past night).
-- Parameters: $source, $as_of
select max(occurred_at) from events
where ($source is null or source = $source)
  and ($as_of is null or occurred_at <= $as_of)
