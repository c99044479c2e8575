-- open_incident: the suite's incident that was raised and has no recovery notice yet, if any.
-- Parameters: $suite.
with

suite_alerts as (
    select incident_id, kind, created_at, subject
    from alerts
    where suite = $suite
),

incidents as (
    select
        incident_id,
        min(created_at)                                                 as opened_at,
        arg_min(subject, created_at) filter (where kind <> 'recovery')  as opened_with,
        bool_or(kind = 'recovery')                                      as recovered
    from suite_alerts
    group by incident_id
),

final as (
    select incident_id, opened_at, opened_with
    from incidents
    where not recovered
)

select * from final
order by opened_at desc
limit 1
