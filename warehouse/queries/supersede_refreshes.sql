-- supersede_refreshes: a full refresh (every earlier run) or a rewind to $as_of (the runs as of then or
-- later) replaces the state those runs left; record when, keep the rows.
-- Parameters: $as_of (null for a full refresh), $superseded_at
update refresh_runs
set superseded_at = $superseded_at
where superseded_at is null
  and ($as_of is null or as_of >= $as_of)
