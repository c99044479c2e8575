-- llm_open_batches: batches submitted and not collected yet, oldest first.
select batch_id, model, prompt_version, text_hashes, submitted_at
from llm_batches
where collected_at is null
order by submitted_at, batch_id
