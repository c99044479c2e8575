-- upsert_source_cursor: move a postgres source's watermark, in the batch's transaction.
-- Parameters: $source, $cursor_column, $value_type, $watermark, $batch_id, $updated_at
insert or replace into ingest_cursors (source, cursor_column, value_type, watermark, last_batch_id, updated_at)
values ($source, $cursor_column, $value_type, $watermark, $batch_id, $updated_at)
