-- data_start: the oldest event (of $source, or of every source when it is null).
select min(occurred_at) from events where $source is null or source = $source
