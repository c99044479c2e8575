-- quality_beliefs: the beliefs in force, as the beliefs suite checks them.
-- Besides the view's columns: key_family (expertise@qubit -> expertise), as_of_versions (distinct
-- as-ofs among the values of one (user, key); must be 1) and one_valued_confidence_sum (sum of the
-- confidences of a one-valued key's values, which the model keeps below 1; NULL for many-valued keys).
-- Parameters: $one_valued_families (key families with cardinality "one")
with beliefs_in_force as (
    select user_id, key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at, as_of
    from beliefs
),

with_family as (
    select *, split_part(key, '@', 1) as key_family
    from beliefs_in_force
),

final as (
    select
        *,
        count(distinct as_of) over (partition by user_id, key) as as_of_versions,
        case
            when list_contains($one_valued_families, key_family)
                then sum(confidence) over (partition by user_id, key)
        end as one_valued_confidence_sum
    from with_family
)

select * from final
