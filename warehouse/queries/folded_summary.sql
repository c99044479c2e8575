-- folded_summary: groups touched by this refresh and how many observations it added to them.
select
    (select count(*) from (select distinct user_id, key from folded)) as groups_touched,
    coalesce((select sum(new_count) from folded), 0) as observations_folded
