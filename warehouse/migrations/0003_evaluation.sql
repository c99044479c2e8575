-- Evaluation layer: data-quality validations (Great Expectations), eval runs against the success bar,
-- and the alerts sent to owners.

-- One validation of one expectation suite (expectations/<suite>.json) against one data asset.
create table expectation_runs (
    validation_id  varchar primary key,
    suite          varchar     not null,  -- e.g. events_batch, quarantine_rate, beliefs, eval_inputs
    asset          varchar     not null,  -- what was validated, e.g. a batch_id or "beliefs"
    validated_at   timestamptz not null,
    success        boolean     not null,  -- every expectation passed
    blocking_failures bigint   not null,  -- failed expectations of severity "block"
    warnings       bigint      not null,  -- failed expectations of severity "warn"
    evaluated      bigint      not null,
    data_docs      varchar                -- path of the HTML page for this validation
);

create table expectation_results (
    validation_id    varchar not null,
    expectation      varchar not null,  -- the expectation type and its column, e.g. expect_column_values_to_not_be_null(user_id)
    severity         varchar not null,  -- warn | block
    success          boolean not null,
    unexpected_count bigint,
    details          json                -- observed value, partial unexpected list, exception info
);

-- One evaluation of one eval suite (predictive, labeled, demo_vs_production, ...).
create table eval_runs (
    run_id        varchar primary key,
    suite         varchar     not null,
    started_at    timestamptz not null,
    ended_at      timestamptz not null,
    passed        boolean     not null,  -- the success bar's verdict
    metrics       json        not null,  -- {metric: value}
    bar           json        not null,  -- {metric: {threshold, op, value, passed}}
    regressions   json        not null,  -- [{metric, before, after, interval, p_value, ...}]
    data_as_of    timestamptz,           -- the newest event the run saw
    code_version  varchar     not null,
    config_hash   varchar     not null
);

-- Per case (labeled sets) or per slice (predictive: key, learning-curve bucket) and metric.
create table eval_results (
    run_id  varchar not null,
    suite   varchar not null,
    case_id varchar not null,  -- a labeled case id, or a slice such as "key=topic" or "prior=5-9"
    metric  varchar not null,
    value   double
);

-- Alerts to owners: one incident per suite while it fails; each delivery attempt is recorded.
create table alerts (
    alert_id      varchar primary key,
    incident_id   varchar     not null,  -- the same for the failure alert and its recovery notice
    suite         varchar     not null,
    kind          varchar     not null,  -- failure | regression | recovery
    owner         varchar     not null,
    channel       varchar     not null,  -- email | webhook
    created_at    timestamptz not null,
    delivered_at  timestamptz,           -- NULL until delivered
    attempts      bigint      not null,
    last_error    varchar,
    subject       varchar     not null,
    body          varchar     not null
);
