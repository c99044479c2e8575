-- insert_llm_extraction: cache what the model answered about a message text (its grounded items only).
-- Parameters: $text_hash, $model, $prompt_version, $items (JSON text), $items_dropped, $input_tokens,
--             $output_tokens, $run_id, $extracted_at
insert into llm_extractions (text_hash, model, prompt_version, items, items_dropped, input_tokens, output_tokens,
                             run_id, extracted_at)
values ($text_hash, $model, $prompt_version, $items::json, $items_dropped, $input_tokens, $output_tokens, $run_id,
        $extracted_at)
on conflict do nothing
