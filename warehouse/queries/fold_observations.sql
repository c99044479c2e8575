-- fold_observations: the new state, at $as_of, of every (user, key) that has observations not yet counted,
-- recomputed from all of its observations (docs/reference.md "Belief model"), so an incremental refresh equals a full one
-- under any parameters. With no previous state, or new parameters, every group is folded: fold_all_observations.
-- Already counted = extract_run <= $prev_watermark and observed_at <= $prev_as_of (one rectangle,
-- because both bounds only grow between full refreshes).
-- Inputs: table `observations`, Arrow tables key_policies, kind_weights, value_base_rates.
-- Parameters: $as_of, $watermark, $prev_as_of, $prev_watermark
with

-- Not materialized: read twice (for the touched groups, and for their scope), DuckDB would copy every
-- observation in the window into memory first (8.5 s of a refresh with nothing new at 27 M observations).
counted as not materialized (
{{observations_in_window}}
),

touched_groups as (
    select distinct user_id, key from counted where is_new
),

-- Not materialized: read twice by effective_observations (observations without and with a repeat discount),
-- and the second read costs nothing when no family has a discount (its join with key_policies is empty).
scope as not materialized (
    select c.* from counted as c semi join touched_groups as g using (user_id, key)
),

{{fold_from_scope}}
