-- forget_user: delete everything held about one user and count what went. Runs in one transaction.
-- Parameters: $user_id
delete from observations where user_id = $user_id;
delete from belief_history where user_id = $user_id;
delete from labels where user_id = $user_id;
delete from events where user_id = $user_id;
delete from quarantine where user_id = $user_id;
-- Others' events that name the user as whose post they rate (Stack Exchange votes) keep no trace of the id.
-- Their content_hash stays that of the record as ingested, so a re-read finds them duplicates.
update events set attributes = json_merge_patch(attributes, '{"target_user_id": null}')
where attributes ->> 'target_user_id' = $user_id;
