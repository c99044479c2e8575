-- A refresh whose state a later full refresh or backfill replaced: its row stays as a record of what
-- ran, but the beliefs no longer continue from it. Refresh modes are now incremental | full | rewind
-- (the first night of a backfill).
alter table refresh_runs add column superseded_at timestamptz;
