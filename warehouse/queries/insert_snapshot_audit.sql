-- insert_snapshot_audit: record one write-audit-publish attempt.
insert into snapshot_audits (
    audit_id, attempted_at, version, content_hash, data_as_of, refresh_id, rows, users, passed, published,
    reason, checks, code_version, config_hash
) values (
    $audit_id, $attempted_at, $version, $content_hash, $data_as_of, $refresh_id, $rows, $users, $passed,
    $published, $reason, $checks, $code_version, $config_hash
)
