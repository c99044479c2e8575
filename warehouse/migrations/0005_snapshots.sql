-- Snapshot layer: every write-audit-publish attempt of a belief snapshot, passed or not, and why.
-- The snapshot files themselves live in the snapshots folder (config snapshots.path); a published
-- snapshot's manifest.json carries the same audit.

create table snapshot_audits (
    audit_id      varchar primary key,
    attempted_at  timestamptz not null,
    version       varchar     not null,  -- the candidate version (published only when passed)
    content_hash  varchar,               -- sha256 of the content (files and data as-of), not of the time
    data_as_of    timestamptz,           -- the as-of the beliefs were decayed to (the last refresh)
    refresh_id    varchar,
    rows          bigint      not null,
    users         bigint      not null,
    passed        boolean     not null,  -- every check of the audit passed
    published     boolean     not null,  -- CURRENT was switched to this version
    reason        varchar,               -- why the audit failed (NULL when it passed)
    checks        json        not null,  -- [{name, passed, detail}]
    code_version  varchar     not null,
    config_hash   varchar     not null
);
