-- latest_snapshot_audit: the last write-audit-publish attempt: its version, content hash and verdict.
select version, content_hash, data_as_of, rows, users, passed, published, reason, attempted_at
from snapshot_audits
order by attempted_at desc
limit 1
