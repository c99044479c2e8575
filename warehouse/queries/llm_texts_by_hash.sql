-- llm_texts_by_hash: the user message texts with these hashes (sha256 of events.text), one text per hash.
-- Parameters: $text_hashes
select sha256(text) as text_hash, any_value(text) as text
from events
where kind = 'message' and text is not null and list_contains($text_hashes, sha256(text))
group by text_hash
