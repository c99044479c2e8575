-- predictive_data_start: the oldest occurred_at (of one source, or of all when $source is null), no later
-- than $as_of when given. A backtest cutoff at or before it would judge beliefs held before there was any data.
-- Parameters: $source, $as_of
select min(occurred_at) from events
where ($source is null or source = $source)
  and ($as_of is null or occurred_at <= $as_of)
