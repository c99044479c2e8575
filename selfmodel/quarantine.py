"""Every quarantine reason, with what it means (one registry: the reference and `selfmodel quarantine`
print it, a test holds the docs to it, and ingest logs an error for a reason missing here); and reading
what ingestion quarantined, for people (`selfmodel quarantine`) and programs (--json)."""

from __future__ import annotations

from pathlib import Path

from warehouse.db import connect, run_dicts

QUARANTINE_REASONS: dict[str, str] = {
    # The record is not a JSON object: bytes first, then the JSON, then the object.
    "malformed_json": "the line is not standard JSON (also a trailing comma, NaN, Infinity)",
    "not_an_object": "the line is JSON but not an object",
    "truncated_last_line": "the file's last line breaks off (a writer still appending, or a cut copy)",
    "blank_line": "an empty line",
    "duplicate_key": "an object names the same key twice, at any depth; detail names the key",
    "invalid_utf8": "bytes that are not UTF-8 (raw_bytes keeps them)",
    "nul_byte": "a NUL byte in the record (raw_bytes keeps it)",
    "record_too_large": "a record over ingest.max_record_bytes",
    # Required fields.
    "missing_user_id": "no user_id",
    "empty_user_id": "a user_id of only whitespace or characters that show nothing (U+200B, U+FEFF, fillers)",
    "invalid_user_id": "a user_id holding a control, line-separator or invisible format character; detail "
                       "names the code point",
    "missing_occurred_at": "no occurred_at",
    "missing_kind": "no kind",
    "empty_event_id": "an event_id of only whitespace or characters that show nothing",
    "wrong_type": "a field has the wrong JSON type; detail names the field and the type found",
    "unparseable_timestamp": "a time that cannot be read (also a UTC offset beyond +-14:00, or of 60+ minutes "
                             "or seconds)",
    "timestamp_too_old": "a time before ingest.min_occurred_at",
    "timestamp_in_future": "a time after now + ingest.max_clock_skew_seconds",
    "unknown_kind": "a kind not in ingest.kinds",
    "empty_text": "a message or response without text",
    # format: chat
    "missing_messages": "format chat: a record without its messages array",
    "unknown_role": "format chat: a role that is not user, assistant, system, developer or tool, nor mapped to "
                    "one in chat.roles",
    "empty_conversation": "format chat: a conversation that gives no event (no user or assistant text, no feedback)",
    # Against what is stored.
    "conflicting_duplicate": "the same event_id as a stored event, with different content",
    "forgotten_user": "a record of a user erased by selfmodel forget, from before the deletion; kept without its "
                      "text or the user's id",
    # Formats and adapters.
    "csv_extra_columns": "a CSV row with more cells than the header",
    "csv_missing_columns": "a CSV row with fewer cells than the header",
    "csv_malformed": "a CSV row with bad quoting",
    "xml_error": "a Stack Exchange row that does not parse (the rows after it still load)",
    "bot_account": "a Stack Exchange post or comment by a bot account (bot_user_ids, default Community -1)",
    "vote_on_deleted_post": "a Stack Exchange vote on a post missing from the dump",
    "unreadable_file": "a Parquet file that cannot be read, or a compressed file whose data breaks off (the "
                       "records before the break and the other files still load)",
}


def unregistered(reasons) -> list[str]:
    """The reasons among `reasons` that the registry does not know (a bug: every reason is ours)."""
    return sorted({reason for reason in reasons if reason not in QUARANTINE_REASONS})


def quarantine_summary(warehouse_path: Path, source: str | None = None, reason: str | None = None,
                       limit: int = 20) -> dict:
    """{"counts": [{source, reason, records}], "records": [latest quarantined records]}."""
    con = connect(warehouse_path, read_only=True)
    try:
        filters = {"source": source, "reason": reason}
        return {
            "counts": run_dicts(con, "quarantine_counts", filters),
            "records": run_dicts(con, "quarantine_examples", {**filters, "limit": limit}),
        }
    finally:
        con.close()
