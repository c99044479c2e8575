-- count_conversation_outcomes_by_file: count_outcomes_by_file for format chat (see count_conversation_outcomes):
-- conversations, not events, per file, outcome and quarantine reason.
select file, record_outcome as outcome, reason, count(*) as records
from classified
where record_outcome is not null
group by all
