-- forget_user: delete everything the warehouse holds about one user, and count what went into the temp table
-- forget_counts. Runs inside the caller's transaction (selfmodel.forget), after which it drops its temp tables.
-- Parameters:
--   $user_id
--   $names_user          RE2 pattern of a record text naming the user in a field that names a user (a
--                        source's user field, a Stack Exchange ...UserId attribute)
--   $quoted_value        RE2 pattern of the id as a quoted JSON string value, for quarantined records whose
--                        user could not be read at all
--   $case_ids            eval case ids about the user: 'user:<id>' and the labeled cases naming them
--   $case_in_json        RE2 pattern of one of those ids as a JSON string (eval_runs.regressions' worst cases)
--   $case_in_text        RE2 pattern of one of those ids in an alert's text (groups 1 and 2: the characters
--                        around it, kept)
--   $id_json             the id as a JSON string, quotes included, as expectation results list values

create or replace temp table forgotten_quarantine as
select rowid as quarantine_row, coalesce(user_id = $user_id, false) as user_known
from quarantine
where user_id = $user_id
   or regexp_matches(coalesce(raw_text, ''), $names_user)
   or (user_id is null and regexp_matches(coalesce(raw_text, ''), $quoted_value));

create or replace temp table forget_counts as
select
    (select count(*) from events where user_id = $user_id) as events,
    (select count(*) from observations where user_id = $user_id) as observations,
    (select count(*) from beliefs where user_id = $user_id) as beliefs,
    (select count(*) from labels where user_id = $user_id) as labels,
    (select count(*) from forgotten_quarantine where user_known) as quarantined,
    (select count(*) from forgotten_quarantine where not user_known) as quarantine_redacted,
    (select count(*) from eval_results where list_contains($case_ids, case_id)) as eval_results,
    (select count(*) from alerts
     where regexp_matches(subject, $case_in_text) or regexp_matches(body, $case_in_text)) as alerts_redacted;

delete from observations where user_id = $user_id;
-- The LLM extractor's cache and failures are keyed by a hash of the message text: those of the user's messages
-- go (a text another user also wrote is asked again for them), and no batch lists them any more: one in flight
-- never stores its answers for them, and a hash left in a collected one would still confirm a guessed text.
create or replace temp table forgotten_texts as
select distinct sha256(text) as text_hash from events where user_id = $user_id and text is not null;
delete from llm_extractions where text_hash in (select text_hash from forgotten_texts);
delete from llm_failures where text_hash in (select text_hash from forgotten_texts);
update llm_batches as b set text_hashes = kept.text_hashes
from (
    select batch_id, coalesce(list(text_hash) filter (where text_hash not in (select text_hash from forgotten_texts)),
                              []::varchar[]) as text_hashes
    from (select batch_id, unnest(text_hashes) as text_hash from llm_batches)
    group by batch_id
) as kept
where b.batch_id = kept.batch_id;
delete from llm_observed where user_id = $user_id;
delete from belief_history where user_id = $user_id;
delete from labels where user_id = $user_id;
delete from events where user_id = $user_id;
delete from quarantine where rowid in (select quarantine_row from forgotten_quarantine where user_known);
-- A record whose user field could not be read stays as a tombstone (place, reason and hash, no text): read
-- again (a re-read file), it is recognised as already quarantined and not stored a second time.
update quarantine
set raw_text = null, raw_bytes = null, event_id = null,
    detail = 'the record named a user later forgotten (selfmodel forget); its text is not kept'
where rowid in (select quarantine_row from forgotten_quarantine where not user_known);
-- Others' events that name the user as whose post they rate (Stack Exchange votes) keep no trace of the id.
-- Their content_hash stays that of the record as ingested, so a re-read finds them duplicates.
update events set attributes = json_merge_patch(attributes, '{"target_user_id": null}')
where attributes ->> 'target_user_id' = $user_id;

-- Per-user eval results, and the places that quote them: regressions' worst cases and alert texts.
delete from eval_results where list_contains($case_ids, case_id);
update eval_runs set regressions = regexp_replace(regressions::varchar, $case_in_json, '"(forgotten)"', 'g')::json
where regexp_matches(regressions::varchar, $case_in_json);
update alerts
set subject = regexp_replace(subject, $case_in_text, '\1(forgotten)\2', 'g'),
    body = regexp_replace(body, $case_in_text, '\1(forgotten)\2', 'g')
where regexp_matches(subject, $case_in_text) or regexp_matches(body, $case_in_text);

-- Expectation results that list the id among unexpected values (checks of the user_id column); their Data
-- Docs pages were rendered from those values, so the caller deletes the pages and the link goes.
create or replace temp table forgotten_validations as
select validation_id, data_docs from expectation_runs
where validation_id in (
    select validation_id from expectation_results
    where expectation like '%user_id%' and contains(details::varchar, $id_json)
);
update expectation_results set details = replace(details::varchar, $id_json, '"(forgotten)"')::json
where validation_id in (select validation_id from forgotten_validations)
  and expectation like '%user_id%' and contains(details::varchar, $id_json);
update expectation_runs set data_docs = null
where validation_id in (select validation_id from forgotten_validations);
