-- latest_eval_runs: the latest run of each eval suite, with its verdict against the success bar.
with

ranked as (
    select
        *,
        row_number() over (partition by suite order by ended_at desc, started_at desc, run_id desc) as recency
    from eval_runs
),

final as (
    select run_id, suite, started_at, ended_at, passed, metrics, data_as_of, code_version
    from ranked
    where recency = 1
)

select * from final order by suite
