-- classify_records: decide for each normalized record (temp table `normalized`) whether it is loaded,
-- counted as a duplicate, or quarantined. Event ids are unique per source:
--   same event_id + same content as an event already stored (or earlier in this chunk) -> duplicate
--   same event_id + different content -> quarantined as conflicting_duplicate; the first version stays
-- A bad record already quarantined from the same place with the same text is a duplicate too, so a
-- re-read file does not fill quarantine with copies. In a file read again whole (rewritten, or a dump
-- re-read as a group) lines may have moved: there a bad record with the same reason and text as one an
-- earlier batch quarantined from that file is a duplicate wherever it now sits.
-- Parameters: $source, $batch_id, $watermark (newest occurred_at of the source before this batch, or NULL),
--   $reread_files (labels of the files this batch reads again from their start)

with

forgotten_users as (
    -- users erased by `selfmodel forget`; deletions keep only a sha256 of the id
    select user_hash, max(deleted_at) as deleted_at from deletions group by user_hash
),

normalized_records as (
    -- A record of a forgotten user from before the deletion (a re-read file, a re-sent log) must not bring
    -- the user back: it is quarantined as forgotten_user, keeping neither its text nor the user's id.
    -- Others' records naming a forgotten user as whose post they rate (Stack Exchange votes,
    -- attributes.target_user_id) lose the id, as forget_user.sql took it from those already stored; the
    -- content hash stays that of the record as read, so reading it again finds a duplicate.
    select
        n.* exclude (reason, detail, raw_text, raw_bytes, raw_hash, user_id, attributes),
        case when t.user_hash is not null then json_merge_patch(n.attributes, '{"target_user_id": null}')::json
             else n.attributes end as attributes,
        case when f.user_hash is not null then 'forgotten_user' else n.reason end as reason,
        case when f.user_hash is not null
             then 'the user was forgotten (selfmodel forget) on ' || strftime(f.deleted_at, '%Y-%m-%d')
                  || '; the record is not kept'
             else n.detail end as detail,
        case when f.user_hash is null then n.raw_text end as raw_text,
        case when f.user_hash is null then n.raw_bytes end as raw_bytes,
        case when f.user_hash is not null then md5(coalesce(n.raw_text, '')) else n.raw_hash end as raw_hash,
        case when f.user_hash is null then n.user_id end as user_id
    from normalized as n
    left join forgotten_users as f
        on f.user_hash = sha256(n.user_id)
        and (n.occurred_at is null or n.occurred_at <= f.deleted_at)
    left join forgotten_users as t
        on t.user_hash = sha256(n.attributes ->> 'target_user_id')
        and (n.occurred_at is null or n.occurred_at <= t.deleted_at)
),

stored_events as (
    select event_id, content_hash from events where source = $source
),

stored_quarantine as (
    select distinct file, line_no, reason, raw_hash from quarantine where source = $source
),

moved_quarantine as (
    select distinct file, reason, raw_hash
    from quarantine
    where source = $source and batch_id <> $batch_id and list_contains($reread_files, file)
),

repeated_ids as (
    -- ids that more than one valid record of this chunk carries; only those need ordering (sorting every
    -- record by id was the costliest step of classifying a chunk)
    select event_id from normalized_records where reason is null group by event_id having count(*) > 1
),

valid_records as (
    select n.*, 1 as occurrence, n.content_hash as first_hash
    from normalized_records as n
    anti join repeated_ids as r using (event_id)
    where n.reason is null
    union all by name
    select
        n.*,
        row_number() over same_id as occurrence,
        first_value(n.content_hash) over same_id as first_hash
    from normalized_records as n
    semi join repeated_ids as r using (event_id)
    where n.reason is null
    window same_id as (partition by n.event_id order by n.file, n.line_no)
),

valid_decided as (
    select
        v.* exclude (occurrence, first_hash),
        case
            when s.content_hash = v.content_hash then 'duplicate'
            when s.content_hash is not null then 'quarantine'
            when v.occurrence = 1 then 'load'
            when v.content_hash = v.first_hash then 'duplicate'
            else 'quarantine'
        end as outcome,
        coalesce(s.content_hash, v.first_hash) as earlier_hash
    from valid_records as v
    left join stored_events as s using (event_id)
),

conflicts_named as (
    select
        * exclude (reason, detail, earlier_hash),
        case when outcome = 'quarantine' then 'conflicting_duplicate' end as reason,
        case when outcome = 'quarantine'
             then 'event_id ' || event_id || ' already holds different content (' || earlier_hash || ')' end as detail
    from valid_decided
),

invalid_decided as (
    select
        n.*,
        case when q.raw_hash is not null or m.raw_hash is not null then 'duplicate' else 'quarantine' end as outcome
    from normalized_records as n
    left join stored_quarantine as q
        on q.file is not distinct from n.file
        and q.line_no is not distinct from n.line_no
        and q.reason = n.reason
        and q.raw_hash = n.raw_hash
    left join moved_quarantine as m
        on m.file = n.file
        and m.reason = n.reason
        and m.raw_hash = n.raw_hash
    where n.reason is not null
),

final as (
    select * exclude (reason, detail, raw_text), reason, detail,
           outcome = 'load' and $watermark is not null and occurred_at < $watermark as is_late,
           -- only a quarantined record keeps its raw text: the rest would be carried for nothing
           case when outcome = 'quarantine' then raw_text end as raw_text
    from conflicts_named
    union all by name
    select *, false as is_late from invalid_decided
)

select * from final
