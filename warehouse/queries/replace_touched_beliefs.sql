-- replace_touched_beliefs: drop the current rows of every (user, key) in `folded`; they are re-inserted
-- with their new state by insert_folded_beliefs.
delete from beliefs
where (user_id, key) in (select distinct user_id, key from folded)
