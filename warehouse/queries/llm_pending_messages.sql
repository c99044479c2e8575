-- llm_pending_messages: the distinct user message texts the LLM extractor has still to ask about, newest first:
-- texts of messages (kind 'message': what users wrote themselves) whose event has no LLM observations yet, with
-- no cached answer for this model and prompt, not in a batch in flight, and not given up (a malformed or
-- refused answer $max_attempts times; transient failures are always asked again). $everything: every message,
-- observed or not (a full refresh observes every event again, from the cache of the model configured now).
-- Parameters: $model, $prompt_version, $max_attempts, $everything
with

unobserved as (
    select e.text, e.occurred_at
    from events as e
    where e.kind = 'message' and e.text is not null and trim(e.text) <> ''
      and ($everything or not exists (
          select 1 from llm_observed as o where o.source = e.source and o.event_id = e.event_id))
),

texts as (
    select sha256(text) as text_hash, any_value(text) as text, max(occurred_at) as latest
    from unobserved
    group by text_hash
),

answered as (
    select text_hash from llm_extractions where model = $model and prompt_version = $prompt_version
),

given_up as (
    select text_hash from llm_failures
    where model = $model and prompt_version = $prompt_version
      and kind in ('malformed', 'refused', 'rejected') and attempts >= $max_attempts
),

in_flight as (
    select unnest(text_hashes) as text_hash from llm_batches
    where collected_at is null and model = $model and prompt_version = $prompt_version
),

final as (
    select t.text_hash, t.text
    from texts as t
    where t.text_hash not in (select text_hash from answered)
      and t.text_hash not in (select text_hash from given_up)
      and t.text_hash not in (select text_hash from in_flight)
    order by t.latest desc, t.text_hash
)

select * from final
