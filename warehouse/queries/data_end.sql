-- data_end: the newest occurred_at in the warehouse (of one source, or of all when $source is null), no
-- later than $as_of when given. The default as-of of a refresh, the end the predictive eval counts back
-- from, and the data an eval run is about.
-- Parameters: $source, $as_of
select max(occurred_at) from events
where ($source is null or source = $source)
  and ($as_of is null or occurred_at <= $as_of)
