-- check_json_path: fails (BinderException) when DuckDB cannot use $path as ingest uses a mapping's paths
-- (json_extract with a list of paths); run on an in-memory connection when the config loads.
-- Parameters: $path
select json_extract('{}', [$path])
