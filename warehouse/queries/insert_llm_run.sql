-- insert_llm_run: what one run that called a language model used and cost (selfmodel.llm.runs).
-- Parameters: $run_id, $purpose, $model, $started_at, $ended_at, $requests, $input_tokens, $output_tokens,
--             $cost_usd, $max_cost_usd, $stopped_by_budget, $details (JSON text)
insert into llm_runs (run_id, purpose, model, started_at, ended_at, requests, input_tokens, output_tokens, cost_usd,
                      max_cost_usd, stopped_by_budget, details)
values ($run_id, $purpose, $model, $started_at, $ended_at, $requests, $input_tokens, $output_tokens, $cost_usd,
        $max_cost_usd, $stopped_by_budget, $details::json)
