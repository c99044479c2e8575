-- clear_llm_failure: a text that failed before has been answered: its failure record goes.
-- Parameters: $text_hash, $model, $prompt_version
delete from llm_failures where text_hash = $text_hash and model = $model and prompt_version = $prompt_version
