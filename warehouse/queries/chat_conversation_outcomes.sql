-- chat_conversation_outcomes: where each conversation of a format chat chunk goes, where one record (a
-- conversation) became many events. Reads `classified` (classify_records' rows: one per event, or one per
-- record that could not be exploded, part_no NULL) and `chunk` (the raw rows; a conversation's text rides on
-- its first event, part_no 0).
--   A conversation any of whose events has a problem (normalize's, forgotten_user, conflicting_duplicate) is
--   quarantined whole: one record with the reason of its first such event, and none of its events loads.
--   Otherwise it is loaded when any of its events is new (those load; the others are duplicates already
--   stored: a conversation that went on), a duplicate when all of them are.
-- A conversation quarantined already from the same place with the same text and reason is a duplicate (as
-- classify_records decides for any bad record, moved lines of re-read files included).
-- Output: classified's columns without the events of quarantined conversations, plus `record_outcome`, set on
-- exactly one row per record (count_conversation_outcomes counts records by it).
-- Parameters: $source, $batch_id, $reread_files

with

single_records as (
    select *, outcome as record_outcome from classified where part_no is null
),

conversation_events as (
    select * from classified where part_no is not null
),

conversations as (
    select
        file,
        line_no,
        arg_min(struct_pack(reason, detail, event_id, user_id), part_no) filter (where reason is not null) as problem,
        bool_or(outcome = 'load') as has_new_event,
        min(part_no) as first_part
    from conversation_events
    group by file, line_no
),

conversation_texts as (
    select file, line_no, byte_offset, raw_text as conversation_text from chunk where part_no = 0
),

troubled as (
    select
        c.file,
        c.line_no,
        t.byte_offset,
        c.problem.reason as reason,
        -- the detail names the event (<conversation>:<message index>) whose problem it is, when that event
        -- could be read at all (an event document not valid JSON: a message holding a lone surrogate escape)
        case when c.problem.reason in ('conflicting_duplicate', 'forgotten_user') then c.problem.detail
             when c.problem.reason = 'malformed_json' then 'a message is not valid JSON once read (a lone '
                  || 'UTF-16 surrogate escape?): ' || c.problem.detail
             else c.problem.event_id || ': ' || c.problem.detail end as detail,
        case when c.problem.reason = 'conflicting_duplicate' then c.problem.event_id end as event_id,
        -- a forgotten user's conversation is kept without its text (as classify_records keeps any record)
        case when c.problem.reason <> 'forgotten_user' then t.conversation_text end as raw_text,
        md5(t.conversation_text) as raw_hash,
        c.problem.user_id as user_id,
        false as is_late
    from conversations as c
    join conversation_texts as t using (file, line_no)
    where c.problem is not null
),

stored_quarantine as (
    select distinct file, line_no, reason, raw_hash from quarantine where source = $source
),

moved_quarantine as (
    select distinct file, reason, raw_hash
    from quarantine
    where source = $source and batch_id <> $batch_id and list_contains($reread_files, file)
),

troubled_decided as (
    select
        t.*,
        case when q.raw_hash is not null or m.raw_hash is not null then 'duplicate' else 'quarantine' end as outcome
    from troubled as t
    left join stored_quarantine as q
        on q.file is not distinct from t.file
        and q.line_no is not distinct from t.line_no
        and q.reason = t.reason
        and q.raw_hash = t.raw_hash
    left join moved_quarantine as m
        on m.file = t.file
        and m.reason = t.reason
        and m.raw_hash = t.raw_hash
),

final as (
    select * from single_records
    union all by name
    select
        e.*,
        case when e.part_no = c.first_part then (case when c.has_new_event then 'load' else 'duplicate' end)
        end as record_outcome
    from conversation_events as e
    join conversations as c using (file, line_no)
    where c.problem is null
    union all by name
    select *, outcome as record_outcome from troubled_decided
)

select * from final
