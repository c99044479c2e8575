-- count_beliefs: rows in the beliefs table.
select count(*) from beliefs
