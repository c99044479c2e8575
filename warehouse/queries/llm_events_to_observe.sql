-- llm_events_to_observe: user messages whose text has a cached LLM answer (this model and prompt) and whose
-- event has no LLM observations yet; with what an observation needs of the event.
-- Parameters: $model, $prompt_version
with

unobserved as (
    select e.*, sha256(e.text) as text_hash
    from events as e
    anti join llm_observed as o on o.source = e.source and o.event_id = e.event_id
    where e.kind = 'message' and e.text is not null and trim(e.text) <> ''
),

final as (
    select
        u.event_id, u.user_id, u.source, u.batch_id, u.occurred_at, u.session_id, u.reply_to, u.text_hash,
        x.items::varchar as items
    from unobserved as u
    join llm_extractions as x
        on x.text_hash = u.text_hash and x.model = $model and x.prompt_version = $prompt_version
)

select * from final order by source, event_id
