-- reset_beliefs: a full refresh recomputes every belief, so the current ones go (history keeps them).
delete from beliefs
