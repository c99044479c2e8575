-- source_cursor: a postgres source's watermark (the greatest cursor value its committed batches read).
-- Parameters: $source
select cursor_column, value_type, watermark from ingest_cursors where source = $source
