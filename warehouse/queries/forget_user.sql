-- forget_user: delete everything held about one user and count what went. Runs in one transaction.
-- Parameters: $user_id
delete from observations where user_id = $user_id;
delete from belief_history where user_id = $user_id;
delete from labels where user_id = $user_id;
delete from events where user_id = $user_id;
delete from quarantine where user_id = $user_id;
