-- normalize_records: turn one chunk of raw records (Arrow table `chunk`, selfmodel.sources.base.RECORD_SCHEMA)
-- into candidate events, each with a quarantine `reason` (NULL when the record is a valid event).
-- Every format goes through this one statement, so every source obeys the same rules.
-- Parameters:
--   $paths     JSON path of each canonical field, in selfmodel.events.CANONICAL_FIELDS order
--   $defaults  JSON value used when a field is absent (NULL for none), same order
--   $default_texts  the same defaults as plain text
--   $strip     JSON merge patch deleting the mapped fields, so `attributes` keeps only the rest
--   $kinds, $timezone, $epoch_unit ('auto' | 's' | 'ms'), $timestamp_format (strptime or NULL),
--   $min_occurred_at, $max_occurred_at
--   $user_in_text  RE2 pattern of the user field as a record's text writes it (group 1 a string, 2 a number)
--   $id_edge_whitespace, $blank_id, $id_bad_character   what an id may not start, end, be or hold
--                  (selfmodel.ingest: ID_WHITESPACE, ID_INVISIBLE)

with

chunk_records as (
    select *, coalesce(doc, raw_text) as document
    from chunk
),

parsed as (
    select
        *,
        pre_reason is null and json_valid(document) as is_json
    from chunk_records
),

objects as (
    select
        *,
        -- valid JSON that starts (after JSON's whitespace) with '{' is an object: no second parse
        case when is_json then ltrim(document, e' \t\n\r')[1] = '{' else false end as is_object
    from parsed
),

keyed as (
    -- An object naming a key twice ({"user_id": "alice", "user_id": "bob"}), at any depth: DuckDB reads the
    -- first, most other readers the last, so the record does not say one thing. Here: the key list of the
    -- first object that repeats a key (json_keys unescapes, so "a" and "\u0061" are the same key).
    -- Wrapped in a list, '$..*' reaches the record itself and every object in it in one parse; the key
    -- lists of scalars (empty) and of one-key objects are dropped before the costlier distinct count.
    -- A record with no second '{' anywhere holds no object but itself, so its own key list (a cheaper
    -- read) is the whole answer; a '{' inside a string only sends it the longer way.
    select
        *,
        case when not is_object then null
             when document not like '%{%{%' then list_filter(
                 [json_keys(document)], lambda keys: list_unique(keys) < len(keys))[1]
             else list_filter(
                 list_filter(json_keys('[' || document || ']', '$..*'), lambda keys: len(keys) > 1),
                 lambda keys: list_unique(keys) < len(keys))[1]
        end as keys_repeating
    from objects
),

extracted as (
    select
        *,
        case when is_object then json_extract(document, $paths) end as found
    from keyed
),

field_values as (
    -- 'null' in the record counts as absent, so a default applies. json_extract writes a value minified, so
    -- a string holding no backslash is its text between the quotes: no second parse for most fields.
    select
        *,
        coalesce(nullif(found[1], 'null'), ($defaults::json[])[1]) as v_event_id,
        case when coalesce(found[1], 'null') = 'null' then ($default_texts::varchar[])[1] when left(found[1], 1) = '"' and not contains(found[1], '\') then substr(found[1], 2, length(found[1]) - 2) else json_extract_string(found[1], '$') end as s_event_id,
        coalesce(nullif(found[2], 'null'), ($defaults::json[])[2]) as v_user_id,
        case when coalesce(found[2], 'null') = 'null' then ($default_texts::varchar[])[2] when left(found[2], 1) = '"' and not contains(found[2], '\') then substr(found[2], 2, length(found[2]) - 2) else json_extract_string(found[2], '$') end as s_user_id,
        coalesce(nullif(found[3], 'null'), ($defaults::json[])[3]) as v_occurred_at,
        case when coalesce(found[3], 'null') = 'null' then ($default_texts::varchar[])[3] when left(found[3], 1) = '"' and not contains(found[3], '\') then substr(found[3], 2, length(found[3]) - 2) else json_extract_string(found[3], '$') end as s_occurred_at,
        coalesce(nullif(found[4], 'null'), ($defaults::json[])[4]) as v_kind,
        case when coalesce(found[4], 'null') = 'null' then ($default_texts::varchar[])[4] when left(found[4], 1) = '"' and not contains(found[4], '\') then substr(found[4], 2, length(found[4]) - 2) else json_extract_string(found[4], '$') end as s_kind,
        coalesce(nullif(found[5], 'null'), ($defaults::json[])[5]) as v_text,
        case when coalesce(found[5], 'null') = 'null' then ($default_texts::varchar[])[5] when left(found[5], 1) = '"' and not contains(found[5], '\') then substr(found[5], 2, length(found[5]) - 2) else json_extract_string(found[5], '$') end as s_text,
        coalesce(nullif(found[6], 'null'), ($defaults::json[])[6]) as v_session_id,
        case when coalesce(found[6], 'null') = 'null' then ($default_texts::varchar[])[6] when left(found[6], 1) = '"' and not contains(found[6], '\') then substr(found[6], 2, length(found[6]) - 2) else json_extract_string(found[6], '$') end as s_session_id,
        coalesce(nullif(found[7], 'null'), ($defaults::json[])[7]) as v_reply_to,
        case when coalesce(found[7], 'null') = 'null' then ($default_texts::varchar[])[7] when left(found[7], 1) = '"' and not contains(found[7], '\') then substr(found[7], 2, length(found[7]) - 2) else json_extract_string(found[7], '$') end as s_reply_to,
        coalesce(nullif(found[8], 'null'), ($defaults::json[])[8]) as v_rating,
        case when coalesce(found[8], 'null') = 'null' then ($default_texts::varchar[])[8] when left(found[8], 1) = '"' and not contains(found[8], '\') then substr(found[8], 2, length(found[8]) - 2) else json_extract_string(found[8], '$') end as s_rating,
        coalesce(nullif(found[9], 'null'), ($defaults::json[])[9]) as v_tags,
        case when coalesce(found[9], 'null') = 'null' then ($default_texts::varchar[])[9] when left(found[9], 1) = '"' and not contains(found[9], '\') then substr(found[9], 2, length(found[9]) - 2) else json_extract_string(found[9], '$') end as s_tags,
        coalesce(nullif(found[10], 'null'), ($defaults::json[])[10]) as v_attributes,
        case when coalesce(found[10], 'null') = 'null' then ($default_texts::varchar[])[10] when left(found[10], 1) = '"' and not contains(found[10], '\') then substr(found[10], 2, length(found[10]) - 2) else json_extract_string(found[10], '$') end as s_attributes
    from extracted
),

field_types as (
    -- a value's JSON type from its first character where that decides it (a string, an object, a list)
    select
        *,
        case left(v_event_id, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_event_id) end as t_event_id,
        case left(v_user_id, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_user_id) end as t_user_id,
        case left(v_occurred_at, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_occurred_at) end as t_occurred_at,
        case left(v_kind, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_kind) end as t_kind,
        case left(v_text, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_text) end as t_text,
        case left(v_session_id, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_session_id) end as t_session_id,
        case left(v_reply_to, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_reply_to) end as t_reply_to,
        case left(v_rating, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_rating) end as t_rating,
        case left(v_tags, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_tags) end as t_tags,
        case left(v_attributes, 1) when '"' then 'VARCHAR' when '{' then 'OBJECT' when '[' then 'ARRAY' else json_type(v_attributes) end as t_attributes
    from field_values
),

typed as (
    select
        *,
        case when t_event_id = 'VARCHAR' then s_event_id
             when t_event_id in ('BIGINT', 'UBIGINT') then s_event_id end as source_event_id,
        -- Whitespace at either end is dropped, of every kind Python's str.strip() drops (tab, newline,
        -- U+00A0, U+3000, ...; RE2's \s alone is ASCII): ' alice\t' is alice.
        case when t_user_id = 'VARCHAR'
             then regexp_replace(s_user_id, $id_edge_whitespace, '', 'g')
             when t_user_id in ('BIGINT', 'UBIGINT') then s_user_id end as user_id,
        case when t_occurred_at = 'VARCHAR' then trim(s_occurred_at) end as occurred_text,
        case when t_occurred_at in ('BIGINT', 'UBIGINT', 'DOUBLE') then try_cast(v_occurred_at as double)
             when t_occurred_at = 'VARCHAR'
                  and regexp_full_match(trim(s_occurred_at), '-?[0-9]+(\.[0-9]+)?')
             then try_cast(trim(s_occurred_at) as double) end as occurred_number,
        case when t_kind = 'VARCHAR' then lower(trim(s_kind)) end as kind,
        case when t_text = 'VARCHAR' then s_text end as text,
        case when t_session_id = 'VARCHAR' then s_session_id
             when t_session_id in ('BIGINT', 'UBIGINT') then s_session_id end as session_id,
        case when t_reply_to = 'VARCHAR' then s_reply_to
             when t_reply_to in ('BIGINT', 'UBIGINT') then s_reply_to end as reply_to,
        case when t_rating in ('BIGINT', 'UBIGINT', 'DOUBLE') then try_cast(v_rating as double)
             when t_rating = 'VARCHAR' then try_cast(trim(s_rating) as double) end as rating,
        -- a list holding null, an object, a list or a boolean is not a list of tags
        case when t_tags = 'ARRAY' and len(list_filter(json_extract(v_tags, '$[*]'),
                  lambda tag: json_type(tag) not in ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE'))) = 0
             then json_extract_string(v_tags, '$[*]')
             when t_tags = 'VARCHAR' and json_valid(s_tags) and json_type(s_tags) = 'ARRAY'
             then case when len(list_filter(json_extract(s_tags, '$[*]'),
                  lambda tag: json_type(tag) not in ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE'))) = 0
                  then json_extract_string(s_tags, '$[*]') end
             when t_tags = 'VARCHAR' then list_filter(
                  list_transform(regexp_split_to_array(s_tags, '[,;|]'), lambda tag: trim(tag)),
                  lambda tag: tag <> '') end as tags_found
    from field_types
),

id_characters as (
    -- The first character of user_id that cannot stand in an id ($id_bad_character): a control character
    -- (NUL, tab, newline, ESC), a line or paragraph separator, or an invisible format character (U+200B zero
    -- width space, U+FEFF, bidi controls). ZWNJ and ZWJ
    -- (U+200C, U+200D) join letters in Persian and Indic scripts and emoji: inside an id they belong to
    -- it, at either end they join nothing.
    select
        *,
        case when regexp_matches(user_id, $id_bad_character) then coalesce(
            nullif(regexp_extract(regexp_replace(user_id, '[\x{200C}\x{200D}]', '', 'g'), $id_bad_character), ''),
            nullif(regexp_extract(user_id, '^[\x{200C}\x{200D}]|[\x{200C}\x{200D}]$'), ''))
        end as user_id_bad_character
    from typed
),

zoned as (
    -- The UTC offset a time ends with (+05:30, -0800, +14, with or without a space before it), if any.
    -- DuckDB reads '2024-01-01T10:00:00+99:99' as 2023-12-28 05:21 UTC; no place is more than 14 hours
    -- from UTC and an hour has 60 minutes (a minute 60 seconds), so such a time cannot be read. (DuckDB
    -- lets a column use the aliases defined before it in the same select.)
    select
        *,
        regexp_extract(occurred_text, '[T ][0-9]{1,2}:[0-9]{2}.*?[+-]([0-9]{2}):?([0-9]{2})?:?([0-9]{2})?$',
                       ['hours', 'minutes', 'seconds']) as utc_offset
    from id_characters
),

offset_checked as (
    select
        *,
        try_cast(nullif(utc_offset.hours, '') as integer) as offset_hours,
        try_cast(nullif(utc_offset.minutes, '') as integer) as offset_minutes,
        try_cast(nullif(utc_offset.seconds, '') as integer) as offset_seconds,
        coalesce(offset_hours * 60 + coalesce(offset_minutes, 0) > 14 * 60 or offset_minutes >= 60
                 or offset_seconds >= 60, false) as offset_out_of_range
    from zoned
),

timed as (
    -- occurred_at_offset_us (format chat): microseconds after the time read, so the messages of a
    -- conversation that has one time for all keep their order.
    select
        *,
        case
            when occurred_number is not null then (
                -- auto: values this large are milliseconds (1e11 seconds is the year 5138)
                case when abs(occurred_number) / (case $epoch_unit when 's' then 1 when 'ms' then 1000
                          else (case when abs(occurred_number) >= 1e11 then 1000 else 1 end) end) < 1e11
                     then to_timestamp(occurred_number / (case $epoch_unit when 's' then 1 when 'ms' then 1000
                          else (case when abs(occurred_number) >= 1e11 then 1000 else 1 end) end)) end)
            when offset_out_of_range then null
            when occurred_text is not null then coalesce(
                -- A time that names its zone (Z, an offset, with or without a space before it, or a zone
                -- name such as UTC or Europe/Berlin) is read in that zone; a cast to a plain timestamp would
                -- drop the zone silently, so only a time without one is read in the source's timezone hint.
                -- An offset may carry seconds (+05:30:00, as Python writes some).
                case when regexp_matches(occurred_text,
                          '[T ][0-9]{1,2}:[0-9]{2}.*?(\s*([zZ]|[+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2})?)?)|\s+[A-Za-z][A-Za-z_/+-]*)$')
                     then try_cast(regexp_replace(occurred_text, '\s+([+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2})?)?)$', '\1')
                                   as timestamptz)
                     else timezone($timezone, try_cast(occurred_text as timestamp)) end,
                timezone($timezone, try_strptime(occurred_text, $timestamp_format)))
        end + to_microseconds(coalesce(occurred_at_offset_us, 0)) as occurred_at
    from offset_checked
),

checked as (
    select
        *,
        case
            when pre_reason is not null then {'reason': pre_reason, 'detail': pre_detail}
            -- whitespace only (a CRLF file's blank line is '\r')
            when regexp_full_match(document, '\s*') then {'reason': 'blank_line', 'detail': 'an empty line is not a record'}
            when not is_json and is_unterminated then
                {'reason': 'truncated_last_line', 'detail': 'the last line has no newline and is not complete JSON'}
            when not is_json then {'reason': 'malformed_json', 'detail': 'not valid JSON'}
            when not is_object then {'reason': 'not_an_object', 'detail': 'a record must be a JSON object, got ' || json_type(document)}
            when keys_repeating is not null then
                {'reason': 'duplicate_key', 'detail': 'key ' || left(to_json(list_filter(keys_repeating,
                    lambda key, position: list_position(keys_repeating, key) < position)[1])::varchar, 80)
                    || ' appears more than once in one object'}
            when v_event_id is not null and source_event_id is null then
                {'reason': 'wrong_type', 'detail': 'event_id: expected a string or integer, got ' || t_event_id}
            -- blank: only whitespace (as for user_id) and invisible format characters such as U+200B
            when source_event_id is not null
                 and regexp_full_match(source_event_id, $blank_id) then
                {'reason': 'empty_event_id', 'detail': 'event_id is empty or blank'}
            when v_user_id is null then {'reason': 'missing_user_id', 'detail': 'no user_id'}
            when user_id is null then
                {'reason': 'wrong_type', 'detail': 'user_id: expected a string or integer, got ' || t_user_id}
            when user_id = '' then {'reason': 'empty_user_id', 'detail': 'user_id is empty or only whitespace'}
            when regexp_full_match(user_id, $blank_id) then
                {'reason': 'empty_user_id', 'detail': 'user_id holds only invisible characters'}
            when user_id_bad_character is not null then
                {'reason': 'invalid_user_id', 'detail': 'user_id holds ' || printf('U+%04X', unicode(user_id_bad_character))
                    || (case when regexp_matches(user_id_bad_character, '\p{Cc}') then ', a control character'
                             when regexp_matches(user_id_bad_character, '[\p{Zl}\p{Zp}]') then ', a line break'
                             else ', an invisible format character' end)}
            when v_occurred_at is null then {'reason': 'missing_occurred_at', 'detail': 'no occurred_at'}
            when occurred_text is null and occurred_number is null then
                {'reason': 'wrong_type', 'detail': 'occurred_at: expected a string or number, got ' || t_occurred_at}
            when occurred_at is null then
                {'reason': 'unparseable_timestamp', 'detail': 'occurred_at: cannot read ' || left(coalesce(occurred_text, v_occurred_at::varchar), 80)
                    || (case when offset_out_of_range then ' (its UTC offset is not within -14:00 and +14:00)' else '' end)}
            when occurred_at < $min_occurred_at then
                {'reason': 'timestamp_too_old', 'detail': 'occurred_at ' || occurred_at || ' is before ingest.min_occurred_at'}
            when occurred_at > $max_occurred_at then
                {'reason': 'timestamp_in_future', 'detail': 'occurred_at ' || occurred_at || ' is later than now plus ingest.max_clock_skew_seconds'}
            when v_kind is null then {'reason': 'missing_kind', 'detail': 'no kind (set defaults: {kind: message} for a source of messages)'}
            when kind is null then {'reason': 'wrong_type', 'detail': 'kind: expected a string, got ' || t_kind}
            when not list_contains($kinds, kind) then {'reason': 'unknown_kind', 'detail': 'kind ' || left(kind, 80) || ' is not one of ingest.kinds'}
            when v_text is not null and text is null then
                {'reason': 'wrong_type', 'detail': 'text: expected a string, got ' || t_text}
            when v_session_id is not null and session_id is null then
                {'reason': 'wrong_type', 'detail': 'session_id: expected a string or integer, got ' || t_session_id}
            when v_reply_to is not null and reply_to is null then
                {'reason': 'wrong_type', 'detail': 'reply_to: expected a string or integer, got ' || t_reply_to}
            when v_rating is not null and (rating is null or not isfinite(rating)) then
                {'reason': 'wrong_type', 'detail': 'rating: expected a finite number, got ' || left(v_rating, 80)}
            when v_tags is not null and tags_found is null then
                {'reason': 'wrong_type', 'detail': 'tags: expected a list of strings, got ' || t_tags}
            when v_attributes is not null and t_attributes <> 'OBJECT' then
                {'reason': 'wrong_type', 'detail': 'attributes: expected an object, got ' || t_attributes}
            when kind in ('message', 'response') and (text is null or trim(text) = '') then
                {'reason': 'empty_text', 'detail': 'a ' || kind || ' needs text'}
        end as problem
    from timed
),

shaped as (
    select
        *,
        coalesce(tags_found, []::varchar[]) as tags,
        -- Merging onto '{}' drops null members, so a Parquet null and an empty CSV cell are the same.
        case when problem is null then json_merge_patch('{}', document, $strip, coalesce(v_attributes, '{}')) end as attributes
    from checked
),

hashed as (
    select
        *,
        md5(to_json(struct_pack(user_id, occurred_at := epoch_us(occurred_at), kind, text, session_id,
                                reply_to, rating, tags, attributes))) as content_hash
    from shaped
),

recovering as (
    -- Only for a quarantined record whose user field could not be read: the user field as its text writes it.
    select
        *,
        case when problem is not null and nullif(user_id, '') is null
             then regexp_extract(document, $user_in_text, 1) end as written_user,
        case when problem is not null and nullif(user_id, '') is null
             then regexp_extract(document, $user_in_text, 2) end as written_number
    from hashed
),

recovered as (
    select
        *,
        coalesce(
            -- a string as JSON writes it, escapes and all: decoded when it decodes
            case when written_user = '' then null
                 when json_valid('"' || written_user || '"') then json_extract_string('"' || written_user || '"', '$')
                 else written_user end,
            nullif(written_number, '')) as user_written_in_text
    from recovering
),

final as (
    select
        file,
        line_no,
        byte_offset,
        raw_text,
        raw_bytes,
        case when problem is not null then md5(raw_text) end as raw_hash,
        problem.reason as reason,
        problem.detail as detail,
        coalesce(source_event_id, 'h:' || content_hash) as event_id,
        case
            when problem is null then user_id
            -- A record naming its user twice says two things: it is no one's (forget finds it by its text).
            when problem.reason = 'duplicate_key' then null
            when nullif(user_id, '') is not null then user_id
            -- A record too broken to parse may still show whose it is, so it stays findable by its user
            -- (selfmodel forget) and a forgotten user's old broken lines read again stay forgotten.
            else user_written_in_text
        end as user_id,
        occurred_at,
        kind,
        text,
        session_id,
        reply_to,
        rating,
        tags,
        coalesce(attributes, '{}')::json as attributes,
        content_hash,
        part_no
    from recovered
)

select * from final
