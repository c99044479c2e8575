-- upsert_llm_failure: record that asking about a message text failed (once more).
-- Parameters: $text_hash, $model, $prompt_version, $kind, $reason, $failed_at, $run_id
insert into llm_failures (text_hash, model, prompt_version, kind, reason, attempts, first_failed_at, last_failed_at,
                          run_id)
values ($text_hash, $model, $prompt_version, $kind, $reason, 1, $failed_at, $failed_at, $run_id)
on conflict (text_hash, model, prompt_version) do update
set kind = excluded.kind, reason = excluded.reason, attempts = llm_failures.attempts + 1,
    last_failed_at = excluded.last_failed_at, run_id = excluded.run_id
