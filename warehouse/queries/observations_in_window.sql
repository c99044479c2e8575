-- observations_in_window (a fragment, included as {{observations_in_window}} inside a CTE by the folds): the
-- observations a fold at $as_of may count (extract_run <= $watermark, observed_at <= $as_of), with `is_new`:
-- not already counted by the previous refresh (extract_run <= $prev_watermark and observed_at <= $prev_as_of,
-- one rectangle because both bounds only grow between full refreshes; NULL for both when there is none).
-- Parameters: $as_of, $watermark, $prev_as_of, $prev_watermark
select user_id, key, value, weight, observed_at, event_id, extractor, evidence_kind, evidence_unit,
       not (extract_run <= coalesce($prev_watermark, -1)
            and observed_at <= coalesce($prev_as_of, '-infinity'::timestamptz)) as is_new
from observations
where extract_run <= $watermark and observed_at <= $as_of
