-- forget_counts: how much is held about one user, per table (counted before `forget_user` deletes it).
-- Parameters: $user_id
select
    (select count(*) from events where user_id = $user_id) as events,
    (select count(*) from observations where user_id = $user_id) as observations,
    (select count(*) from beliefs where user_id = $user_id) as beliefs,
    (select count(*) from labels where user_id = $user_id) as labels,
    (select count(*) from quarantine where user_id = $user_id) as quarantined
