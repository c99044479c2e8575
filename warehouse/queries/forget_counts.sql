-- forget_counts: how much `forget_user` deleted or redacted, per table (its temp table forget_counts).
select * from forget_counts
