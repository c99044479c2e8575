-- forgotten_users: every user `selfmodel forget` erased (a sha256 of the id) and when it last happened.
select user_hash, max(deleted_at) as deleted_at from deletions group by user_hash
