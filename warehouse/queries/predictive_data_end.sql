-- predictive_data_end: the newest occurred_at the predictive eval counts from (of one source, or of all when
-- $source is null). Parameters: $source
select max(occurred_at) from events where $source is null or source = $source
