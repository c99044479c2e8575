-- enrichment_sample: the enrichment judge's queries. Users with a belief at or above $threshold at the cutoff
-- (temp table beliefs_at_cutoff) and a message in the held-out window (cutoff, horizon_end]: one message each,
-- up to $sample_size users. Seeded (md5 of the seed and an id): the same seed picks the same queries.
-- `candidates` counts the users there were to pick from. Parameters: $cutoff, $horizon_end, $source, $threshold,
-- $seed, $sample_size
with

enrichable as (
    select distinct user_id from beliefs_at_cutoff where confidence >= $threshold
),

window_messages as (
    select e.user_id, e.event_id, e.text
    from events as e
    join enrichable using (user_id)
    where e.kind = 'message' and e.occurred_at > $cutoff and e.occurred_at <= $horizon_end
      and e.text is not null and trim(e.text) <> ''
      and ($source is null or e.source = $source)
),

one_per_user as (
    select *
    from window_messages
    qualify row_number() over (partition by user_id order by md5(cast($seed as varchar) || ':' || event_id), event_id) = 1
),

final as (
    select user_id, event_id, text, count(*) over () as candidates
    from one_per_user
    order by md5(cast($seed as varchar) || ':' || user_id), user_id
    limit $sample_size
)

select * from final
