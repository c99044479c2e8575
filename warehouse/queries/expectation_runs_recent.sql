-- expectation_runs_recent: the latest validations with their failed expectations, for the Data Docs index.
-- Parameters: $limit
with recent as (
    select *
    from expectation_runs
    order by validated_at desc, validation_id desc
    limit $limit
),

failures as (
    select
        validation_id,
        list(severity || ': ' || expectation
             || coalesce(' (' || unexpected_count || ' unexpected)', '')
             order by severity, expectation) as failed
    from expectation_results
    where not success
    group by validation_id
),

final as (
    select r.*, coalesce(f.failed, []) as failed
    from recent as r
    left join failures as f using (validation_id)
)

select * from final
order by validated_at desc, validation_id desc
