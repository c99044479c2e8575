-- insert_labels: add labels (Arrow table `new_labels`) not already stored for the source, except those of
-- users erased by `selfmodel forget` (a re-read profile must not bring them back).
-- Parameters: $source, $batch_id
insert into labels
select distinct n.*, $batch_id as batch_id
from (select $source as source, user_id, label, value, observed_at, context from new_labels) as n
where sha256(n.user_id) not in (select user_hash from deletions)
  and not exists (
    select 1 from labels as l
    where l.source = n.source and l.user_id = n.user_id and l.label = n.label and l.value = n.value
      and l.observed_at is not distinct from n.observed_at and l.context is not distinct from n.context
)
