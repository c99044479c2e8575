-- insert_llm_observed: remember which events' LLM observations are stored (Arrow table `observed_events`).
-- Parameters: $model, $prompt_version, $extract_run
insert into llm_observed (source, event_id, user_id, text_hash, model, prompt_version, observations, extract_run)
select source, event_id, user_id, text_hash, $model, $prompt_version, observations, $extract_run
from observed_events
