-- insert_deletion: record that a user was forgotten: when, a hash of the id, and how much went.
-- Parameters: $deleted_at, $user_hash, $events, $observations, $beliefs, $labels, $quarantined
insert into deletions (deleted_at, user_hash, events, observations, beliefs, labels, quarantined)
values ($deleted_at, $user_hash, $events, $observations, $beliefs, $labels, $quarantined)
