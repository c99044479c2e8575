-- fold_all_observations: the new state, at $as_of, of every (user, key), from all of its observations: a full
-- refresh, a rewind, or an incremental one under new parameters (docs/reference.md "Belief model"); fold_observations
-- folds only the groups with new observations. Already counted (is_new false) = extract_run <= $prev_watermark
-- and observed_at <= $prev_as_of; a refresh with no previous state passes NULL for both.
-- Inputs: table `observations`, Arrow tables key_policies, kind_weights, value_base_rates.
-- Parameters: $as_of, $watermark, $prev_as_of, $prev_watermark
with

-- Not materialized: read twice by effective_observations (observations without and with a repeat discount);
-- materialized, every observation's columns would be copied once more, and the second read costs nothing when
-- no family has a discount (its join with key_policies is empty).
scope as not materialized (
{{observations_in_window}}
),

{{fold_from_scope}}
