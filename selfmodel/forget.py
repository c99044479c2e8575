"""`selfmodel forget USER_ID`: what is held about a user goes from every table, copy and snapshot; only the
fact that a deletion happened stays (table `deletions`: when, a sha256 of the id, how much went).

Where a user is held, and what forgetting does there (docs/reference.md "Forgetting a user"):

* events, observations, belief history (so beliefs), labels: the user's rows are deleted; others' events
  that name the user as whose post they rate (Stack Exchange votes) lose the id.
* quarantine: records of the user (`quarantine.user_id`, read at ingest even from a broken record when its
  user field can still be found in its text) are deleted. Records that name the user in a field that names
  a user (a source's user field, a Stack Exchange `...UserId="1837"` attribute: the last editor of a bot's
  post), and records whose user could not be read at all that hold the id as a quoted JSON string value
  (`"user": "1837"`), keep only a tombstone (place, reason, hash; no text), so reading them again does not
  store them again. An id only written some other way (escaped differently, split, in free text, a CSV
  cell of an unreadable row) cannot be matched.
* eval results of the user (`case_id = 'user:<id>'`, and labeled cases about the user); regressions' worst
  cases and alert subjects and bodies that quote those case ids show `(forgotten)` instead.
* expectation results listing the id among unexpected values (the user_id checks) show `(forgotten)`, and
  the Data Docs pages rendered from those values are deleted (the index is written again without them).
* published snapshots: every kept version holding the user is rewritten without them
  (selfmodel.publish.forget_in_snapshots), so neither CURRENT nor a rollback serves the user again.
* the warehouse file is rewritten with live rows only (DuckDB keeps deleted rows' bytes in free blocks),
  the analysts' read-only copy is exported again at once, and a killed sharded refresh's leftover copies of
  events are removed.

Files that are the team's own (the labeled case files and demo users naming the user) are not edited: the
report lists them, so someone removes the user there. A re-read of the user's old records quarantines them
as `forgotten_user` (classify_records.sql), so forgetting survives re-ingesting the same logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import duckdb
import yaml

from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import ConfigError, Settings
from warehouse.db import WarehouseError, compact, connect, execute, re2_literal, run, run_dicts, run_script

log = logging.getLogger("selfmodel.forget")

# Characters that can be part of an id or a case id: a match must not continue into one of them.
_ID_CHARACTER = "A-Za-z0-9_.@-"


@dataclass
class ForgetReport:
    """What `selfmodel forget` did (its --json output)."""

    user_id: str
    deleted: dict[str, int]
    snapshots: list[dict] = field(default_factory=list)  # [{"version", "rewritten_as"}]
    data_docs_pages: int = 0
    analyst_copy: str | None = None
    still_named_in: list[str] = field(default_factory=list)  # the team's own files that name the user

    def to_json(self) -> dict:
        return asdict(self)


def user_fields(settings: Settings | None) -> list[str]:
    """The field names under which the configured sources name their user (the mapping of user_id)."""
    from selfmodel.ingest import user_field_name

    names = {"user_id"} | {user_field_name(source) for source in (settings.sources if settings else ())}
    return sorted(name for name in names if name)


def user_field_pattern(user_id: str, fields: Iterable[str]) -> str:
    """RE2 pattern of a record text naming `user_id` in a field that names a user: a source's user field
    (`"user_id": "1837"` or `"user_id": 1837`) or a Stack Exchange `...UserId="1837"` attribute (the owner,
    the voter, or the last editor of someone else's post)."""
    alternatives = []
    for name in fields:
        key = re2_literal(json.dumps(name)) + r"\s*:\s*"
        alternatives += [key + re2_literal(form) for form in _json_strings(user_id)]
        if re.fullmatch(r"-?[0-9]+", user_id):  # an integer id may be written as a JSON number
            alternatives.append(key + re2_literal(user_id) + r"(?:[^0-9.eE]|$)")
    escaped = user_id.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    alternatives.append(r'UserId="' + re2_literal(escaped) + '"')
    return "|".join(f"(?:{alternative})" for alternative in alternatives)


def quoted_value_pattern(user_id: str) -> str:
    """RE2 pattern of `user_id` as a quoted JSON string value (`: "1837"`), whatever the key: how a record too
    broken to read its user field may still name them."""
    return "|".join(f"(?::\\s*{re2_literal(form)})" for form in _json_strings(user_id))


def _json_strings(text: str) -> list[str]:
    return sorted({json.dumps(text), json.dumps(text, ensure_ascii=False)})


def case_ids_about(settings: Settings | None, user_id: str) -> tuple[list[str], list[str]]:
    """(eval case ids about the user, the team's files naming the user): `user:<id>` (per-user predictive
    results) and the ids of labeled cases whose user is `user_id`; the case files and demo_users.yaml that
    name the user."""
    case_ids, files = [f"user:{user_id}"], []
    if settings is None:
        return case_ids, files
    from selfmodel.evals.run import eval_folder

    folder = eval_folder(settings) / "evals"
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue  # the eval run reports a broken case file; forgetting must not stop on it
        if not isinstance(content, dict):
            continue
        named = [str(case.get("id")) for case in content.get("cases") or [] if isinstance(case, dict)
                 and str(case.get("user_id")) == user_id]
        case_ids += named
        if named or user_id in map(str, content.get("users") or []):
            files.append(str(path))
    return case_ids, files


def refuse_blank_user_id(user_id: str) -> None:
    """An id of nothing (an unset shell variable) or of whitespace names no user ingest would load, and its
    patterns would match every record's user field: refused (ConfigError), before anything is touched."""
    if not "".join(char for char in user_id if unicodedata.category(char) != "Cf").strip():
        raise ConfigError(f"user id {user_id!r} is empty or blank: no user has it, so there is nothing to forget")


def forget_user(con: duckdb.DuckDBPyConnection, user_id: str, clock: Clock | None = None,
                settings: Settings | None = None, case_ids: list[str] | None = None) -> dict:
    """Delete what the warehouse holds about the user in one transaction; record only that it happened.

    Returns the counts per table; `data_docs_pages` lists the validation pages that quoted the id (the
    caller deletes the files). Without settings, only the default user field and `user:<id>` cases are known;
    `case_ids` (from case_ids_about) saves reading the case files again.
    """
    clock = clock or SystemClock()
    refuse_blank_user_id(user_id)
    if case_ids is None:
        case_ids, _ = case_ids_about(settings, user_id)
    alternatives = "|".join(re2_literal(case_id) for case_id in case_ids)
    params = {
        "user_id": user_id,
        "names_user": user_field_pattern(user_id, user_fields(settings)),
        "quoted_value": quoted_value_pattern(user_id),
        "case_ids": case_ids,
        "case_in_json": "|".join(re2_literal(json.dumps(case_id)) for case_id in case_ids),
        "case_in_text": f"(^|[^{_ID_CHARACTER}])(?:{alternatives})([^{_ID_CHARACTER}]|$)",
        "id_json": json.dumps(user_id),
    }
    execute(con, "begin transaction")
    try:
        run_script(con, "forget_user", params)
        [counts] = run_dicts(con, "forget_counts")
        pages = [page for (page,) in run(con, "forgotten_validation_pages")]
        run(con, "insert_deletion", {
            "deleted_at": clock.now(), "user_hash": hashlib.sha256(user_id.encode()).hexdigest(),
            **{name: counts[name] for name in ("events", "observations", "beliefs", "labels", "quarantined")}})
        run_script(con, "forget_user_done")
        execute(con, "commit")
    except Exception:
        execute(con, "rollback")
        raise
    return {**counts, "data_docs_pages": pages}


def forget(settings: Settings, user_id: str, clock: Clock | None = None) -> ForgetReport:
    """Forget the user everywhere selfmodel keeps data (see the module doc); the caller holds the writer lock.

    In order of what matters most: the warehouse's tables (one transaction), then what serves or shows the
    user (the analyst copy, the snapshots, Data Docs pages), then leftovers, and last the rewrite of the
    warehouse file, which needs room for a second copy. Each step can be done again: a forget that stopped
    half-way (a full disk, a kill) finishes when run again, and its error says so.
    """
    from selfmodel.analyst import export_analyst_copy
    from selfmodel.beliefs.observe import shard_leftovers
    from selfmodel.ingest import staging_leftovers
    from selfmodel.publish import forget_in_snapshots
    from selfmodel.quality import prune_data_docs
    from warehouse.online import SnapshotError

    clock = clock or SystemClock()
    refuse_blank_user_id(user_id)
    case_ids, named_in = case_ids_about(settings, user_id)  # the team's case files, read once
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
    try:
        counts = forget_user(con, user_id, clock, settings, case_ids)
        pages = counts.pop("data_docs_pages")
        report = ForgetReport(user_id, counts, data_docs_pages=len(pages), still_named_in=named_in)
        copy = settings.analyst_copy_path
        if copy is not None and copy.exists():
            export_analyst_copy(con, settings, clock=clock)  # analysts must not keep reading what was erased
            report.analyst_copy = str(copy)
        for page in pages:
            Path(page).unlink(missing_ok=True)
        if pages:
            prune_data_docs(con, settings)
    finally:
        con.close()
    try:
        report.snapshots = forget_in_snapshots(settings.snapshots_path, user_id, clock)
    except (SnapshotError, OSError) as exc:
        raise SnapshotError(f"the warehouse and its copy forgot the user, but the snapshots in "
                            f"{settings.snapshots_path} could not all be rewritten ({exc}); fix that and run "
                            "`selfmodel forget` again: until then a snapshot may still serve the user") from None
    # A sharded refresh killed with -9 leaves its copies of events behind; no refresh runs now (the caller
    # holds the writer lock), so whatever is there is such a leftover.
    # The same for an ingest killed while it held copies of a remote source's objects.
    for leftover in [*shard_leftovers(settings), *staging_leftovers(settings)]:
        shutil.rmtree(leftover, ignore_errors=True)
    # Deleted rows' bytes stay in the file's free blocks: the file is rewritten with live rows only.
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
    try:
        compact(con, settings.warehouse_path)
    except (duckdb.Error, OSError) as exc:
        con.close()
        raise WarehouseError(f"the user is forgotten in every table, copy and snapshot, but the warehouse file "
                             f"could not be rewritten to clear its free space ({type(exc).__name__}: {exc}); "
                             "make room (it needs a second copy's worth) and run `selfmodel forget` again") from None
    log.info("forgot a user: %s; %d snapshot(s) rewritten", counts, len(report.snapshots))
    return report
