-- count_beliefs: beliefs in force.
select count(*) from belief_history where valid_to is null
