-- blocking_failures: failed block-severity expectations in the latest validation of each (suite, asset),
-- what stops a publish. An older failure no longer counts once a later validation of the same asset
-- passed (an events batch fixed and re-validated; a source whose next batch is healthy again).
-- Parameters: $suites (NULL = every suite)
-- Validations made at the same instant (one run over several batches of a source) are ordered by batch.
with latest as (
    select r.*
    from expectation_runs as r
    left join ingest_batches as b on b.batch_id = r.batch_id
    where $suites is null or list_contains($suites, r.suite)
    qualify row_number() over (
        partition by r.suite, r.asset
        order by r.validated_at desc, b.started_at desc nulls last, r.batch_id desc nulls last, r.validation_id desc
    ) = 1
),

final as (
    select
        l.suite, l.asset, l.batch_id, l.validation_id, l.validated_at, r.expectation, r.unexpected_count,
        r.details, l.data_docs
    from latest as l
    join expectation_results as r on r.validation_id = l.validation_id
    where r.severity = 'block' and not r.success
)

select * from final
order by validated_at, suite, asset, expectation
