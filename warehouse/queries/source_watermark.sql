-- source_watermark: the newest event time a source has loaded; older arrivals are late.
-- Parameters: $source
select max(occurred_at) from events where source = $source
