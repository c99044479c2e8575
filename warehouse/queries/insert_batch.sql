-- insert_batch: record one ingest batch and its counts (committed with its rows, or failed alone).
-- Parameters: one per column.
insert into ingest_batches
    (batch_id, source, format, status, started_at, ended_at, rows_read, loaded, duplicates, quarantined,
     late_events, labels_loaded, events_loaded, files, watermark_before, error, code_version)
values
    ($batch_id, $source, $format, $status, $started_at, $ended_at, $rows_read, $loaded, $duplicates,
     $quarantined, $late_events, $labels_loaded, $events_loaded, $files, $watermark_before, $error, $code_version)
