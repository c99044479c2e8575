-- forget_user_done: drop the temp tables forget_user.sql made, before its transaction commits.
drop table if exists temp.forgotten_quarantine;
drop table if exists temp.forget_counts;
drop table if exists temp.forgotten_validations;
drop table if exists temp.forgotten_texts;
