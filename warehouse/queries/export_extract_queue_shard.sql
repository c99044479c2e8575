-- export_extract_queue_shard: the queued events (temp table extract_queue) of one shard of users.
-- Users are split by a stable hash of user_id, so a user's events always land in the same shard.
-- Parameters: $shards, $shard
select * exclude (queue_row)
from extract_queue
where hash(user_id) % $shards = $shard
