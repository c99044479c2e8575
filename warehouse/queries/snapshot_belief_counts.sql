-- snapshot_belief_counts: beliefs in force, and how many of them have a key family the config does not
-- know (they could not be decayed, so a snapshot would silently miss them).
-- Inputs: Arrow table `key_policies`.
with

families as (
    select family from key_policies
),

final as (
    select
        count(*) as in_force,
        count(*) filter (where split_part(b.key, '@', 1) not in (select family from families)) as unknown_family
    from beliefs as b
)

select * from final
