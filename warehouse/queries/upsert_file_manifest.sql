-- upsert_file_manifest: record how far a file has been read, in the batch's transaction.
-- Parameters: $source, $path, $size, $mtime_ns, $sha256, $consumed_bytes, $resume_offset, $resume_line,
--             $batch_id, $updated_at, $etag (an object's ETag or version; NULL for a local file)
insert or replace into ingest_files
    (source, path, size, mtime_ns, sha256, consumed_bytes, resume_offset, resume_line, last_batch_id, updated_at, etag)
values
    ($source, $path, $size, $mtime_ns, $sha256, $consumed_bytes, $resume_offset, $resume_line, $batch_id, $updated_at, $etag)
