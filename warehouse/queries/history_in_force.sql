-- history_in_force: whether any belief_history row is in force (valid_to is null); when none is, a refresh
-- has nothing to close (close_history would still read every folded group to find that out).
select exists (select 1 from belief_history where valid_to is null)
