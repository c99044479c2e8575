-- folded_summary: groups touched by this refresh and how many observations it added to them.
select
    (select count(*) from (select distinct user_id, key from folded)) as groups_touched,
    coalesce((select sum(evidence_count) from folded), 0)
      - coalesce((select sum(b.evidence_count) from beliefs as b
                  where (b.user_id, b.key) in (select distinct user_id, key from folded)), 0)
      as observations_folded
