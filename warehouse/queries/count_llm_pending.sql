-- count_llm_pending: how many distinct message texts the LLM extractor has still to ask about.
-- Parameters: $model, $prompt_version, $max_attempts, $everything
select count(*) from (
{{llm_pending_messages}}
)
