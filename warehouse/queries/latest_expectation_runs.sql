-- latest_expectation_runs: the latest validation of each expectation suite and asset.
with

ranked as (
    select
        *,
        row_number() over (partition by suite, asset order by validated_at desc, validation_id desc) as recency
    from expectation_runs
),

final as (
    select validation_id, suite, asset, validated_at, success, blocking_failures, warnings, evaluated
    from ranked
    where recency = 1
)

select * from final order by suite, asset
