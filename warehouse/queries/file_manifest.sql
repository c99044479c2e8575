-- file_manifest: what was last read of each file of a source.
-- Parameters: $source
select path, size, mtime_ns, sha256, consumed_bytes, resume_offset, resume_line, etag
from ingest_files
where source = $source
