"""Belief refresh in the warehouse: the SQL fold matches the model, incremental equals full, as-of,
history, cold start and forgetting."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from selfmodel.beliefs.model import CalibrationMap, KeyPolicy, Observation, confidences, decayed_evidence
from selfmodel.beliefs.parameters import adopt, policy_to_json
from selfmodel.beliefs.read import user_beliefs
from selfmodel.beliefs.refresh import RefreshError, refresh_beliefs
from selfmodel.clock import FixedClock
from selfmodel.forget import forget_user
from selfmodel.ingest import ingest
from warehouse.db import connect, load_sql, run

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
KEYS = ["role", "topic", "expertise@qubit"]  # one-valued, many-valued, a per-topic family


def seed_observations(con, rows: list[tuple], extract_run: int) -> None:
    """Observations as if extraction run `extract_run` had made them: (user, key, value, weight, observed_at)
    and optionally (..., evidence kind, evidence unit)."""
    for user, key, value, weight, at, *kind_and_unit in rows:
        kind, unit = kind_and_unit or (None, None)
        con.execute(
            "insert into observations values (?, ?, ?, ?, ?, ?, 'test', 'test', '1', ?, ?, ?, ?)",
            [user, key, value, weight, at, f"e-{user}-{key}-{at.isoformat()}", f"b{extract_run}", extract_run,
             kind, unit],
        ).fetchall()
    con.execute("insert into extracted_batches values (?, ?, 'test', ?, ?)",
                [f"b{extract_run}", extract_run, len(rows), T0]).fetchall()


def random_observations(rng: random.Random, count: int) -> list[tuple]:
    values = {"role": ["nurse", "teacher"], "topic": ["music", "pets", "food"], "expertise@qubit": ["novice", "expert"]}
    rows = []
    for _ in range(count):
        key = rng.choice(KEYS)
        rows.append((f"u{rng.randrange(5)}", key, rng.choice(values[key]), rng.uniform(0.1, 2.0),
                     T0 + timedelta(seconds=rng.randrange(200 * 86400))))
    return rows


def beliefs_at(con, settings, at: datetime) -> dict[tuple, tuple[float, float, int]]:
    """Every stored belief moved to `at`: (user, key, value) -> (decayed evidence, confidence, count)."""
    rows = con.execute("select user_id, key, value, decayed_evidence, evidence_count, as_of from beliefs").fetchall()
    groups: dict[tuple, dict] = {}
    for user, key, value, evidence, count, as_of in rows:
        policy = settings.beliefs.keys[key.split("@")[0]]
        moved = evidence * 2 ** (-((at - as_of).total_seconds() / 86400) / policy.half_life_days)
        groups.setdefault((user, key), {})[value] = (moved, count)
    result = {}
    for (user, key), values in groups.items():
        policy = settings.beliefs.keys[key.split("@")[0]]
        model_policy = KeyPolicy(policy.cardinality, policy.half_life_days, policy.prior)
        confidence = confidences({v: s for v, (s, _) in values.items()}, model_policy)
        for value, (s, count) in values.items():
            result[(user, key, value)] = (s, confidence[value], count)
    return result


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def chat_event(n: int, user: str, text: str, day: int) -> dict:
    return {"event_id": f"m{n}", "user_id": user, "kind": "message", "text": text,
            "occurred_at": (T0 + timedelta(days=day)).isoformat()}


@pytest.fixture
def warehouse(make_settings):
    settings = make_settings(sources=[])
    con = connect(settings.warehouse_path)
    yield settings, con
    con.close()


def test_the_sql_fold_computes_the_model(warehouse) -> None:
    settings, con = warehouse
    rows = random_observations(random.Random(7), 300)
    seed_observations(con, rows, 1)
    as_of = T0 + timedelta(days=210)
    refresh_beliefs(con, settings, as_of=as_of)
    stored = beliefs_at(con, settings, as_of)
    expected_count = 0
    for user in {r[0] for r in rows}:
        for key in KEYS:
            obs = [Observation(v, w, t) for u, k, v, w, t in rows if u == user and k == key]
            if not obs:
                continue
            policy = settings.beliefs.keys[key.split("@")[0]]
            evidence = decayed_evidence(obs, as_of, policy.half_life_days)
            expected = confidences(evidence, KeyPolicy(policy.cardinality, policy.half_life_days, policy.prior))
            for value, s in evidence.items():
                expected_count += 1
                got_s, got_confidence, _ = stored[(user, key, value)]
                assert got_s == pytest.approx(s, rel=1e-9)
                assert got_confidence == pytest.approx(expected[value], rel=1e-9)
    assert len(stored) == expected_count


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_refreshes_equal_one_full_recompute(make_settings, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    rows = random_observations(rng, 400)
    rng.shuffle(rows)  # arrival order is not time order: later runs bring late observations
    runs = [rows[i::4] for i in range(4)]
    as_ofs = sorted(T0 + timedelta(days=rng.randrange(20, 190)) for _ in range(3)) + [T0 + timedelta(days=200)]

    settings = make_settings(sources=[])
    incremental = connect(settings.warehouse_path)
    for number, (arriving, as_of) in enumerate(zip(runs, as_ofs), start=1):
        seed_observations(incremental, arriving, number)
        refresh_beliefs(incremental, settings, as_of=as_of)
    final = as_ofs[-1]
    incremental_state = beliefs_at(incremental, settings, final)

    refresh_beliefs(incremental, settings, as_of=final, full=False)  # nothing new: nothing changes
    assert beliefs_at(incremental, settings, final) == incremental_state
    incremental.close()

    other = tmp_path / "full"
    other.mkdir()
    (other / "selfmodel.yaml").write_text("warehouse: {path: wh.duckdb}\nsources: []\n")
    from selfmodel.settings import load_settings

    full_settings = load_settings(other / "selfmodel.yaml", environ={})
    full = connect(full_settings.warehouse_path)
    for number, arriving in enumerate(runs, start=1):
        seed_observations(full, arriving, number)
    con_report = refresh_beliefs(full, full_settings, as_of=final)
    full_state = beliefs_at(full, full_settings, final)
    full.close()

    assert con_report.observations_folded == len(rows)
    assert set(incremental_state) == set(full_state)
    for belief, (s, confidence, count) in full_state.items():
        got_s, got_confidence, got_count = incremental_state[belief]
        assert got_count == count
        assert got_s == pytest.approx(s, rel=1e-9)
        assert got_confidence == pytest.approx(confidence, rel=1e-9)


@pytest.mark.parametrize("seed", [4, 5])
def test_incremental_equals_full_when_feedback_arrives_before_what_it_rates(make_settings, tmp_path: Path,
                                                                           seed: int) -> None:
    """Real events through ingest and the extractors, arriving in shuffled batches: a thumbs-down may come in
    a batch before the long response it rates, and late messages before earlier ones."""
    rng = random.Random(seed)
    events = []
    for n in range(60):
        user, day = f"u{n % 5}", rng.randrange(0, 60)
        events.append(chat_event(n, user, rng.choice(["I'm a teacher and I love cooking pasta.", "thanks, ok",
                                                      "How do I sort a list in `python`?"]), day))
        response = {"event_id": f"r{n}", "user_id": user, "kind": "response", "reply_to": f"m{n}",
                    "occurred_at": (T0 + timedelta(days=day, hours=1)).isoformat(),
                    "text": " ".join(["This long answer explains every step in detail."] * rng.choice([1, 12]))}
        vote = {"event_id": f"f{n}", "user_id": user, "kind": "feedback", "reply_to": f"r{n}",
                "rating": rng.choice([-1, 1]), "occurred_at": (T0 + timedelta(days=day, hours=2)).isoformat()}
        events += [response, vote]
    rng.shuffle(events)
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "batches/*.jsonl"}])
    (tmp_path / "batches").mkdir()
    for number in range(4):
        write_jsonl(tmp_path / "batches" / f"{number}.jsonl", events[number::4])
        ingest(settings, clock=FixedClock(T0 + timedelta(days=90)))
        con = connect(settings.warehouse_path)
        refresh_beliefs(con, settings, as_of=T0 + timedelta(days=61 + number))
        con.close()

    final = T0 + timedelta(days=64)

    def current() -> dict:
        con = connect(settings.warehouse_path)
        try:
            return beliefs_at(con, settings, final)
        finally:
            con.close()

    incremental = current()
    assert any(key == "style.verbosity" for _, key, _ in incremental), "feedback on responses is evidence"
    con = connect(settings.warehouse_path)
    refresh_beliefs(con, settings, as_of=final, full=True)
    con.close()
    full = current()
    assert incremental.keys() == full.keys()
    for belief, (evidence, confidence, count) in full.items():
        assert incremental[belief][2] == count, belief
        assert incremental[belief][0] == pytest.approx(evidence, rel=1e-9), belief
        assert incremental[belief][1] == pytest.approx(confidence, rel=1e-9), belief


def test_as_of_equals_a_recompute_from_observations_up_to_then(warehouse) -> None:
    settings, con = warehouse
    rows = random_observations(random.Random(11), 200)
    seed_observations(con, rows, 1)
    refresh_beliefs(con, settings, as_of=T0 + timedelta(days=200))
    at = T0 + timedelta(days=90)
    model = user_beliefs(con, settings, "u1", as_of=at)
    assert model["as_of"] == at
    got = {(b["key"], b["value"]): b["confidence"] for b in model["beliefs"]}
    expected = {}
    for key in KEYS:
        policy = settings.beliefs.keys[key.split("@")[0]]
        obs = [Observation(v, w, t) for u, k, v, w, t in rows if u == "u1" and k == key and t <= at]
        evidence = decayed_evidence(obs, at, policy.half_life_days)
        for value, c in confidences(evidence, KeyPolicy(policy.cardinality, policy.half_life_days, policy.prior)).items():
            expected[(key, value)] = c
    assert got.keys() == expected.keys()
    for belief, confidence in expected.items():
        assert got[belief] == pytest.approx(confidence, rel=1e-9)


def test_history_answers_what_we_believed_at_any_moment(warehouse) -> None:
    settings, con = warehouse
    seed_observations(con, [("u", "role", "teacher", 1.0, T0 + timedelta(days=d)) for d in range(4)], 1)
    refresh_beliefs(con, settings, as_of=T0 + timedelta(days=5))
    seed_observations(con, [("u", "role", "nurse", 3.0, T0 + timedelta(days=8 + d)) for d in range(3)], 2)
    refresh_beliefs(con, settings, as_of=T0 + timedelta(days=12))

    def believed(moment):
        return dict(con.execute(
            "select value, confidence from belief_history where user_id = 'u' and key = 'role' "
            "and valid_from <= ? and (valid_to is null or valid_to > ?)", [moment, moment]).fetchall())

    early, late = believed(T0 + timedelta(days=6)), believed(T0 + timedelta(days=20))
    assert set(early) == {"teacher"}
    assert set(late) == {"teacher", "nurse"}  # contradicted, not overwritten
    assert late["teacher"] < early["teacher"]
    assert late["nurse"] > late["teacher"]


def test_an_incremental_refresh_cannot_go_back_in_time_but_a_full_one_can(make_settings, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "chat.jsonl", [chat_event(i, "u", "I love jazz music so much, really.", i) for i in range(8)])
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}])
    ingest(settings, clock=FixedClock(T0 + timedelta(days=30)))
    con = connect(settings.warehouse_path)
    refresh_beliefs(con, settings, as_of=T0 + timedelta(days=3))
    refresh_beliefs(con, settings, as_of=T0 + timedelta(days=10))
    with pytest.raises(RefreshError, match="--full"):
        refresh_beliefs(con, settings, as_of=T0 + timedelta(days=5))
    report = refresh_beliefs(con, settings, as_of=T0 + timedelta(days=5), full=True)
    assert report.events_extracted == 8  # a full refresh re-extracts every event
    assert {row[0] for row in con.execute("select as_of from beliefs").fetchall()} == {T0 + timedelta(days=5)}
    music = con.execute("select evidence_count from beliefs where key = 'topic' and value = 'music'").fetchone()
    assert music == (6,)  # observations from days 0..5 only
    # history holds one state per moment: the day-3 state ends at day 5, the day-10 one is dropped
    overlapping = con.execute("""
        select key, value, count(*) from belief_history
        where valid_from <= $at and (valid_to is null or valid_to > $at) group by all having count(*) > 1
    """, {"at": T0 + timedelta(days=7)}).fetchall()
    assert overlapping == []
    assert con.execute("select max(valid_from) from belief_history").fetchone() == (T0 + timedelta(days=5),)
    con.close()


def test_cold_start_users_get_nothing_enrichable_while_active_users_do(make_settings, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "chat.jsonl", [
        chat_event(0, "newcomer", "Hi! I'm a nurse and I have two dogs, I love jazz music.", 9),
        *[chat_event(i, "regular", f"I'm a nurse, and today at the hospital shift {i} was long. I love jazz music.", i)
          for i in range(1, 7)],
    ])
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}])
    ingest(settings, clock=FixedClock(T0 + timedelta(days=30)))
    con = connect(settings.warehouse_path)
    refresh_beliefs(con, settings)
    threshold = settings.beliefs.serving_threshold
    newcomer = user_beliefs(con, settings, "newcomer")["beliefs"]
    regular = {(b["key"], b["value"]): b["confidence"] for b in user_beliefs(con, settings, "regular")["beliefs"]}
    con.close()
    assert newcomer, "the newcomer's message is evidence"
    assert all(b["confidence"] < threshold for b in newcomer)
    assert regular[("role", "nurse")] >= threshold
    assert regular[("language", "en")] >= threshold


def test_forget_removes_the_user_and_records_only_that_it_happened(make_settings, tmp_path: Path) -> None:
    events = [chat_event(i, "alice" if i % 2 else "bob", "I'm a teacher and I love cooking pasta.", i) for i in range(6)]
    events.append({**chat_event(99, "alice", "sent from the year 1970", 0), "occurred_at": 5})  # quarantined
    write_jsonl(tmp_path / "chat.jsonl", events)
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}])
    ingest(settings, clock=FixedClock(T0 + timedelta(days=30)))
    con = connect(settings.warehouse_path)
    refresh_beliefs(con, settings)
    counts = forget_user(con, "alice")
    assert counts["events"] == 3 and counts["beliefs"] > 0 and counts["quarantined"] == 1
    for table in ("events", "observations", "beliefs", "belief_history", "quarantine"):
        assert con.execute(f"select count(*) from {table} where user_id = 'alice'").fetchone()[0] == 0
        if table != "quarantine":
            assert con.execute(f"select count(*) from {table} where user_id = 'bob'").fetchone()[0] > 0
    [(user_hash, events)] = con.execute("select user_hash, events from deletions").fetchall()
    assert "alice" not in user_hash and events == 3
    con.close()


def test_a_forgotten_user_stays_forgotten_when_their_records_are_read_again(make_settings, tmp_path: Path) -> None:
    events = [chat_event(i, "alice" if i % 2 else "bob", "I'm a teacher and I love cooking pasta.", i) for i in range(6)]
    write_jsonl(tmp_path / "chat.jsonl", events)
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}])
    ingest(settings, clock=FixedClock(T0 + timedelta(days=30)))
    con = connect(settings.warehouse_path)
    forget_user(con, "alice", clock=FixedClock(T0 + timedelta(days=31)))
    con.close()

    # the log is re-sent (rewritten, lines moved) with one message alice wrote after she was forgotten
    later = chat_event(50, "alice", "Back again: I'm a nurse now.", 40)
    write_jsonl(tmp_path / "chat.jsonl", [chat_event(40, "bob", "new here", 35), *events, later])
    [report] = ingest(settings, clock=FixedClock(T0 + timedelta(days=41)))
    assert (report.rows_read, report.loaded, report.duplicates, report.quarantined) == (8, 2, 3, 3)
    con = connect(settings.warehouse_path)
    try:
        assert con.execute("select event_id from events where user_id = 'alice'").fetchall() == [(later["event_id"],)]
        rows = con.execute("select reason, user_id, raw_text, raw_bytes, detail from quarantine").fetchall()
        assert len(rows) == 3 and all(r[:4] == ("forgotten_user", None, None, None) for r in rows)
        assert "forgotten" in rows[0][4] and "alice" not in rows[0][4]
    finally:
        con.close()
    [again] = ingest(settings, clock=FixedClock(T0 + timedelta(days=42)))  # unchanged: nothing read
    assert again.rows_read == 0


def test_forgetting_a_stack_exchange_user_survives_a_reread_of_the_dump(make_settings, qc_sample: Path,
                                                                        tmp_path: Path) -> None:
    import shutil

    dump = tmp_path / "qc"
    shutil.copytree(qc_sample, dump)
    settings = make_settings(sources=[{"name": "qc", "format": "stackexchange", "path": str(dump)}])
    [first] = ingest(settings, clock=FixedClock(datetime(2018, 9, 3, tzinfo=timezone.utc)))
    con = connect(settings.warehouse_path)
    counts = forget_user(con, "26", clock=FixedClock(datetime(2018, 9, 4, tzinfo=timezone.utc)))
    assert counts["events"] > 100 and counts["labels"] > 0
    assert con.execute("select count(*) from events where attributes ->> 'target_user_id' = '26'").fetchone()[0] == 0
    con.close()

    with open(dump / "Votes.xml", "rb+") as votes:  # the dump is updated: every file is read again
        body = votes.read()
        votes.seek(0)
        # one more upvote, on an answer of user 26's (post 84), cast before they were forgotten
        votes.write(body.replace(b"</votes>", b'  <row Id="999999" PostId="84" VoteTypeId="2" '
                                              b'CreationDate="2018-09-02T00:00:00.000" />\r\n</votes>'))
    [second] = ingest(settings, clock=FixedClock(datetime(2018, 9, 5, tzinfo=timezone.utc)))
    assert second.loaded == 1 and second.rows_read == first.rows_read + 1
    con = connect(settings.warehouse_path)
    try:
        for table in ("events", "labels", "quarantine"):
            assert con.execute(f"select count(*) from {table} where user_id = '26'").fetchone()[0] == 0, table
        assert con.execute("select count(*) from events where attributes ->> 'target_user_id' = '26'").fetchone()[0] == 0
        [(new_vote,)] = con.execute("select attributes from events where event_id like '%999999'").fetchall()
        assert json.loads(new_vote).get("target_user_id") is None  # read again, the vote does not name them
        [(forgotten,)] = con.execute("select count(*) from quarantine where reason = 'forgotten_user'").fetchall()
        assert forgotten == counts["events"] + counts["quarantined"]  # bad records of theirs too
        # Bot posts that user 26 last edited (LastEditorUserId="26") name them without being theirs: their text
        # went at forget time, and reading the dump again does not bring it back.
        assert counts["quarantine_redacted"] == 3
        named = con.execute("select count(*) from quarantine where raw_text like '%UserId=\"26\"%'").fetchone()[0]
        assert named == 0
    finally:
        con.close()


def test_extraction_in_worker_processes_gives_the_same_observations(make_settings, tmp_path: Path,
                                                                     monkeypatch) -> None:
    import selfmodel.beliefs.observe as observe

    texts = ["I'm a nurse and I love jazz music.", "How do I fix `x = 1`? $a^2$", "ok", "Hola, ¿cómo estás hoy, amigo?"]
    write_jsonl(tmp_path / "chat.jsonl", [chat_event(i, f"u{i % 7}", texts[i % 4] + f" #{i}", i % 30) for i in range(300)])
    observations = {}
    add_table = observe.ObservationWriter.add_table
    for workers in (1, 2):
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        (folder / "chat.jsonl").write_text((tmp_path / "chat.jsonl").read_text())
        (folder / "selfmodel.yaml").write_text(
            f"warehouse: {{path: wh.duckdb, memory_limit: 2GB}}\n"
            f"sources:\n  - {{name: chat, format: jsonl, path: chat.jsonl}}\nbeliefs: {{extract_workers: {workers}}}\n")
        from selfmodel.settings import load_settings

        settings = load_settings(folder / "selfmodel.yaml", environ={})
        ingest(settings, clock=FixedClock(T0 + timedelta(days=60)))
        monkeypatch.setattr(observe, "PARALLEL_MIN_EVENTS", 100)
        monkeypatch.setattr(observe, "FETCH_ROWS", 40)
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        limit = lambda: con.execute("select current_setting('memory_limit')").fetchall()[0][0]  # noqa: E731
        configured, while_writing = limit(), set()
        monkeypatch.setattr(observe.ObservationWriter, "add_table",
                            lambda writer, *args: (while_writing.add(limit()), add_table(writer, *args))[1])
        report = refresh_beliefs(con, settings)
        observations[workers] = sorted(con.execute(
            "select user_id, key, value, weight, observed_at, event_id, extractor from observations").fetchall())
        # Workers hold memory of their own: DuckDB's limit makes room for them while they run, and only then.
        share = duckdb.connect()
        share.execute(f"set memory_limit = '{2 * 10**9 - 2 * observe.WORKER_MEMORY_BYTES}B'")
        assert while_writing == ({configured} if workers == 1 else
                                 {share.execute("select current_setting('memory_limit')").fetchall()[0][0]})
        assert limit() == configured
        con.close()
        assert report.events_extracted == 300
    assert observations[1] == observations[2] and len(observations[1]) > 600


@pytest.mark.parametrize("failing", ["extraction", "fold"])
def test_an_error_that_aborts_the_refresh_is_the_one_raised_and_every_setting_is_put_back(
        make_settings, tmp_path: Path, monkeypatch, failing: str) -> None:
    """The refresh lowers DuckDB's memory_limit while extraction workers run and turns an optimizer off for the fold;
    both are SETs, which a rollback does not undo. An error inside aborts the refresh's transaction, after which
    DuckDB refused the SET that put them back: that refusal replaced the error (so an OutOfMemoryException was a
    traceback, not `clean_errors`' one line) and the settings stayed changed."""
    import selfmodel.beliefs.observe as observe
    from selfmodel.beliefs import refresh as refresh_module

    write_jsonl(tmp_path / "chat.jsonl", [chat_event(i, f"u{i % 7}", f"I'm a nurse and I love jazz #{i}", i % 30)
                                          for i in range(300)])
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
                             warehouse={"path": "wh.duckdb", "memory_limit": "2GB"}, beliefs={"extract_workers": 2})
    ingest(settings, clock=FixedClock(T0 + timedelta(days=60)))
    monkeypatch.setattr(observe, "PARALLEL_MIN_EVENTS", 100)
    monkeypatch.setattr(observe, "FETCH_ROWS", 40)
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
    setting = lambda name: con.execute(f"select current_setting('{name}')").fetchall()[0][0]  # noqa: E731
    before = setting("memory_limit"), setting("disabled_optimizers")

    def abort(con_) -> None:  # fails while executing, as running out of memory does: the transaction is aborted
        con_.execute("select error('the disk under the warehouse is full')").fetchall()

    if failing == "extraction":
        monkeypatch.setattr(observe.ObservationWriter, "add_table", lambda writer, *args: abort(writer.con))
    else:
        real_execute = refresh_module.execute
        monkeypatch.setattr(refresh_module, "execute", lambda con_, sql, *args: abort(con_) if "temp table folded"
                            in sql else real_execute(con_, sql, *args))
    try:
        with pytest.raises(duckdb.InvalidInputException, match="the disk under the warehouse is full"):
            refresh_beliefs(con, settings)
        assert (setting("memory_limit"), setting("disabled_optimizers")) == before
        assert con.execute("select count(*) from observations").fetchall() == [(0,)]  # rolled back
    finally:
        con.close()


FAR_FUTURE = datetime(9999, 1, 1, tzinfo=timezone.utc)


def _jazz_events(days: int) -> list[dict]:
    return [chat_event(day, "u", "I love jazz music so much, really.", day) for day in range(days)]


def _jazz_warehouse(make_settings, tmp_path: Path, now: datetime):
    write_jsonl(tmp_path / "chat.jsonl", _jazz_events(8))
    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "chat.jsonl"}],
                             ingest={"max_clock_skew_seconds": 300})
    ingest(settings, clock=FixedClock(now))
    return settings, connect(settings.warehouse_path)


def _count(con, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchone()[0]


def test_an_as_of_later_than_now_plus_the_skew_tolerance_is_refused_before_anything_is_written(
        make_settings, tmp_path: Path) -> None:
    now = T0 + timedelta(days=30)
    settings, con = _jazz_warehouse(make_settings, tmp_path, now)
    for as_of in (FAR_FUTURE, now + timedelta(seconds=301)):
        with pytest.raises(RefreshError, match=r"is in the future: later than now plus the clock-skew tolerance "
                                               r"\(ingest.max_clock_skew_seconds = 300\)"):
            refresh_beliefs(con, settings, as_of=as_of, clock=FixedClock(now))
    assert [_count(con, t) for t in ("refresh_runs", "observations", "belief_history")] == [0, 0, 0]
    report = refresh_beliefs(con, settings, as_of=now + timedelta(seconds=300), clock=FixedClock(now))
    assert report.as_of == now + timedelta(seconds=300) and report.beliefs_total > 0  # the tolerance itself is fine
    con.close()


def test_beliefs_left_in_the_far_future_name_the_way_out_and_a_full_refresh_takes_it(
        make_settings, tmp_path: Path) -> None:
    now = T0 + timedelta(days=30)
    settings, con = _jazz_warehouse(make_settings, tmp_path, now)
    refresh_beliefs(con, settings, as_of=FAR_FUTURE, clock=FixedClock(FAR_FUTURE))  # as a refresh before the check
    assert con.execute("select max(confidence) from beliefs").fetchone() == (0.0,)  # everything decayed away
    with pytest.raises(RefreshError) as refused:  # what every nightly run then met
        refresh_beliefs(con, settings, clock=FixedClock(now))
    message = str(refused.value)
    assert "in the future" in message and "`selfmodel refresh --full`" in message and "selfmodel backfill" in message
    assert "\n" not in message

    refresh_beliefs(con, settings, full=True, clock=FixedClock(now))  # the way out the message names
    later = now + timedelta(days=1)
    write_jsonl(tmp_path / "chat.jsonl", _jazz_events(9))
    ingest(settings, clock=FixedClock(later))
    report = refresh_beliefs(con, settings, clock=FixedClock(later))  # and the nightly refresh goes on from there
    assert report.mode == "incremental" and report.as_of == T0 + timedelta(days=8)
    assert con.execute("select max(confidence) from beliefs").fetchone()[0] > 0.5
    assert con.execute("select count(*) from belief_history where valid_from > ?", [now]).fetchone() == (0,)
    con.close()


# --- fitted parameters (docs/reference.md "Calibration"): the fold stays the model, incremental stays full ------------

FITTED = {
    "role": KeyPolicy("one", 40.0, 1.3, repeat_discount=0.5, kind_weights={"role:declared": 2.5},
                      base_rates={"nurse": 0.2}, calibration=CalibrationMap(1.7, 0.3, 0.8)),
    "topic": KeyPolicy("many", 12.0, 3.1, repeat_discount=0.4, kind_weights={"topic:tag": 0.7, "topic:keyword": 1.9},
                       base_rates={"music": 0.4, "pets": 0.05}, calibration=CalibrationMap(0.8, 1.6, -0.3)),
    "expertise": KeyPolicy("one", 90.0, 2.2, repeat_discount=0.8, kind_weights={"expertise:upvote": 0.6},
                           base_rates={"expert": 0.3, "novice": 0.5}, calibration=CalibrationMap(1.2, 1.1, 0.2)),
}
KINDS = {"role": ["role:declared", None], "topic": ["topic:tag", "topic:keyword"],
         "expertise@qubit": ["expertise:upvote", "expertise:accept"]}


def adopt_policies(con, policies: dict[str, KeyPolicy], at: datetime = T0) -> str:
    """Put fitted policies in force as `selfmodel calibrate` would (a calibration_runs row and its adoption)."""
    calibration_id = f"cal-test-{len(con.execute('select * from calibration_runs').fetchall())}"
    parameters = {family: {"before": None, "fitted": policy_to_json(policy)} for family, policy in policies.items()}
    run(con, "insert_calibration_run", {
        "calibration_id": calibration_id, "started_at": at, "ended_at": at, "data_as_of": at, "train_from": at,
        "train_to": at, "validation_from": at, "validation_to": at, "evaluation_from": at,
        "parameters": json.dumps(parameters), "figures": "{}", "adopted": True,
        "families_adopted": sorted(policies), "config_hash": "test", "code_version": "test"})
    adopt(con, calibration_id, at, "test")
    return calibration_id


def observations_with_kinds(rng: random.Random, count: int) -> list[tuple]:
    """Random observations with evidence kinds and units, so the repeat discount and kind weights matter."""
    rows = []
    for user, key, value, weight, at in random_observations(rng, count):
        rows.append((user, key, value, weight, at, rng.choice(KINDS[key]), rng.choice(["post|1", "post|2", None])))
    return rows


def model_beliefs(rows: list[tuple], settings, policies: dict[str, KeyPolicy], at: datetime) -> dict:
    expected = {}
    for user in {r[0] for r in rows}:
        for key in KEYS:
            family = key.split("@")[0]
            policy = policies.get(family) or KeyPolicy(settings.beliefs.keys[family].cardinality,
                                                       settings.beliefs.keys[family].half_life_days,
                                                       settings.beliefs.keys[family].prior)
            obs = [Observation(v, w, t, kind=kind or None, unit=unit, event_id=f"e-{u}-{k}-{t.isoformat()}")
                   for u, k, v, w, t, kind, unit in rows if u == user and k == key]
            if obs:
                evidence = decayed_evidence(obs, at, policy.half_life_days, policy)
                for value, c in confidences(evidence, policy).items():
                    expected[(user, key, value)] = (evidence[value], c)
    return expected


def view_beliefs(con) -> dict:
    return {(u, k, v): (s, c) for u, k, v, s, c in
            con.execute("select user_id, key, value, decayed_evidence, confidence from beliefs").fetchall()}


def test_the_sql_fold_and_the_beliefs_view_compute_the_model_with_fitted_parameters(warehouse) -> None:
    settings, con = warehouse
    rows = observations_with_kinds(random.Random(8), 300)
    seed_observations(con, rows, 1)
    adopt_policies(con, FITTED)
    as_of = T0 + timedelta(days=210)
    report = refresh_beliefs(con, settings, as_of=as_of)
    assert report.calibration_id is not None
    expected = model_beliefs(rows, settings, FITTED, as_of)
    got = view_beliefs(con)
    assert got.keys() == expected.keys()
    for belief, (evidence, confidence) in expected.items():
        assert got[belief][0] == pytest.approx(evidence, rel=1e-9), belief
        assert got[belief][1] == pytest.approx(confidence, rel=1e-9), belief
    one_valued = {}
    for (user, key, _), (_, confidence) in got.items():
        if key != "topic":
            one_valued[(user, key)] = one_valued.get((user, key), 0.0) + confidence
    assert max(one_valued.values()) < 1


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_equals_full_with_fitted_parameters_and_late_observations(make_settings, tmp_path: Path,
                                                                               seed: int) -> None:
    rng = random.Random(seed)
    rows = observations_with_kinds(rng, 400)
    rng.shuffle(rows)  # late observations: a repeat discount ranks them by time, whatever their arrival
    runs = [rows[i::4] for i in range(4)]
    as_ofs = sorted(T0 + timedelta(days=rng.randrange(20, 190)) for _ in range(3)) + [T0 + timedelta(days=200)]
    settings = make_settings(sources=[])
    con = connect(settings.warehouse_path)
    adopt_policies(con, FITTED)
    for number, (arriving, as_of) in enumerate(zip(runs, as_ofs), start=1):
        seed_observations(con, arriving, number)
        refresh_beliefs(con, settings, as_of=as_of)
    incremental = view_beliefs(con)
    con.close()
    other = tmp_path / "full"
    other.mkdir()
    (other / "selfmodel.yaml").write_text("warehouse: {path: wh.duckdb}\nsources: []\n")
    from selfmodel.settings import load_settings

    full_settings = load_settings(other / "selfmodel.yaml", environ={})
    con = connect(full_settings.warehouse_path)
    adopt_policies(con, FITTED)
    seed_observations(con, rows, 1)  # every observation in one run, in time order's stead
    refresh_beliefs(con, full_settings, as_of=as_ofs[-1])
    full = view_beliefs(con)
    con.close()
    expected = model_beliefs(rows, settings, FITTED, as_ofs[-1])
    assert incremental.keys() == full.keys() == expected.keys()
    for belief, (evidence, confidence) in full.items():
        assert incremental[belief][0] == pytest.approx(evidence, rel=1e-9), belief
        assert incremental[belief][1] == pytest.approx(confidence, rel=1e-9), belief
        assert confidence == pytest.approx(expected[belief][1], rel=1e-9), belief


def test_a_calibration_adopted_between_refreshes_refolds_every_group(warehouse) -> None:
    settings, con = warehouse
    rows = observations_with_kinds(random.Random(3), 200)
    seed_observations(con, rows, 1)
    first = refresh_beliefs(con, settings, as_of=T0 + timedelta(days=200))
    assert first.calibration_id is None
    adopt_policies(con, FITTED)
    # No new observation: without the re-fold the beliefs would keep the old parameters' confidence.
    second = refresh_beliefs(con, settings, as_of=T0 + timedelta(days=201))
    assert second.refolded and second.groups_touched == first.groups_touched
    assert second.parameter_set != first.parameter_set
    expected = model_beliefs(rows, settings, FITTED, T0 + timedelta(days=201))
    got = view_beliefs(con)
    for belief, (_, confidence) in expected.items():
        assert got[belief][1] == pytest.approx(confidence, rel=1e-9), belief
    third = refresh_beliefs(con, settings, as_of=T0 + timedelta(days=202))
    assert not third.refolded and third.groups_touched == 0


def test_beliefs_of_a_user_no_refresh_touched_since_are_current_through_the_cli(make_settings, tmp_path: Path
                                                                                ) -> None:
    """Item 4 of issue 12: the `beliefs` view gives every row's confidence as of the latest refresh."""
    from click.testing import CliRunner

    from selfmodel.cli import main

    settings = make_settings(sources=[{"name": "chat", "format": "jsonl", "path": "batches/*.jsonl"}])
    (tmp_path / "batches").mkdir()
    cli = lambda *args: CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), *args])  # noqa: E731
    early = [chat_event(n, "early", "I'm a nurse and I love jazz music so much, really.", n) for n in range(4)]
    write_jsonl(tmp_path / "batches" / "1.jsonl", early + [chat_event(10, "late", "I love cooking pasta a lot.", 5)])
    assert cli("ingest").exit_code == 0
    assert cli("refresh").exit_code == 0
    write_jsonl(tmp_path / "batches" / "2.jsonl",
                [chat_event(20 + n, "late", "I love cooking pasta a lot.", 60 + n) for n in range(3)])
    assert cli("ingest").exit_code == 0
    assert cli("refresh").exit_code == 0  # touches only "late"; as of day 62

    def view() -> dict:
        con = connect(settings.warehouse_path, read_only=True)
        try:
            return {(u, k, v): c for u, k, v, c in
                    con.execute("select user_id, key, value, confidence from beliefs").fetchall()}
        finally:
            con.close()

    incremental = view()
    shown = json.loads(cli("beliefs", "early", "--json").stdout)
    assert cli("refresh", "--full").exit_code == 0
    full = view()
    assert incremental.keys() == full.keys()
    early_beliefs = [b for b in full if b[0] == "early"]
    assert early_beliefs
    for belief in full:
        assert incremental[belief] == pytest.approx(full[belief], rel=1e-9), belief
    for belief in shown["beliefs"]:
        assert belief["confidence"] == pytest.approx(full[("early", belief["key"], belief["value"])], rel=1e-9)
    con = connect(settings.warehouse_path, read_only=True)
    [(stale_days,)] = con.execute("select max(epoch(as_of) - epoch(valid_from)) / 86400 from beliefs "
                                  "join belief_history using (user_id, key, value) where valid_to is null").fetchall()
    con.close()
    assert stale_days == 0  # every row is as of the latest refresh


def test_observations_extracted_before_evidence_kinds_get_the_weight_calibrate_fitted_for_them(warehouse) -> None:
    """A warehouse migrated from before 0009 keeps observations without an evidence kind until `refresh --full`;
    calibrate fits their weight as kind "<extractor>:" (calibration_evidence.sql), so the fold, the view and an
    as-of read must weigh them by that kind too, not leave them at 1."""
    settings, con = warehouse
    at = T0 + timedelta(days=10)
    con.execute("insert into observations values ('u1', 'role', 'nurse', 1.0, ?, 'e1', 'test', 'role', '1', 'b1', 1,"
                " null, null)", [at]).fetchall()
    con.execute("insert into extracted_batches values ('b1', 1, 'test', 1, ?)", [T0]).fetchall()
    con.execute("create temp table calibration_candidates as select 'role' as family, 0 as belief_index, "
                "'u1' as user_id, 'role' as key, 'nurse' as value, ?::timestamptz as cutoff", [at]).fetchall()
    [fitted_kind] = [row[4] for row in con.execute(load_sql("calibration_evidence"), {"fit_end": at}).fetchall()]
    assert fitted_kind == "role:"
    role = KeyPolicy("one", 40.0, 1.0, kind_weights={fitted_kind: 3.0})
    adopt_policies(con, {"role": role})
    refresh_beliefs(con, settings, as_of=at)
    expected = confidences({"nurse": 3.0}, role)["nurse"]
    assert view_beliefs(con)[("u1", "role", "nurse")] == pytest.approx((3.0, expected), rel=1e-12)
    [shown] = user_beliefs(con, settings, "u1", as_of=at)["beliefs"]
    assert shown["confidence"] == pytest.approx(expected, rel=1e-12)


def test_every_query_of_the_belief_formula_computes_the_model(warehouse) -> None:
    """The formula has one home (the belief_* macros and their fragments); each query using it, not only the
    fold and the view, gives the model's confidence: a user's beliefs now and as of a past time, the
    eval's beliefs at a cutoff, and the rows a snapshot is written from."""
    from selfmodel.evals.predictive import create_beliefs_at_cutoff

    settings, con = warehouse
    rows = observations_with_kinds(random.Random(11), 300)
    seed_observations(con, rows, 1)
    adopt_policies(con, FITTED)
    as_of, past = T0 + timedelta(days=210), T0 + timedelta(days=120)
    refresh_beliefs(con, settings, as_of=as_of)
    now_expected = model_beliefs(rows, settings, FITTED, as_of)
    past_expected = model_beliefs([r for r in rows if r[4] <= past], settings, FITTED, past)

    def check(got: dict, expected: dict, where: str) -> None:
        assert got.keys() == expected.keys(), where
        for belief, confidence in got.items():
            assert confidence == pytest.approx(expected[belief][1], rel=1e-9), (where, belief)

    users = sorted({r[0] for r in rows})
    current, then = {}, {}
    for user in users:
        for belief in user_beliefs(con, settings, user)["beliefs"]:
            current[(user, belief["key"], belief["value"])] = belief["confidence"]
        for belief in user_beliefs(con, settings, user, as_of=past)["beliefs"]:
            then[(user, belief["key"], belief["value"])] = belief["confidence"]
    check(current, now_expected, "user_beliefs_current")
    check(then, past_expected, "user_beliefs_as_of")

    create_beliefs_at_cutoff(con, settings, past)
    check({(u, k, v): c for u, k, v, c in con.execute(
        "select user_id, key, value, confidence from beliefs_at_cutoff").fetchall()}, past_expected,
        "beliefs_at_cutoff")

    # The snapshot rounds to 12 significant digits (docs/reference.md "Snapshots"), well inside 1e-9.
    snapshot = con.sql(load_sql("snapshot_beliefs"), params={"min_confidence": 0.0}).fetchall()
    columns = [d[0] for d in con.sql(load_sql("snapshot_beliefs"), params={"min_confidence": 0.0}).description]
    check({(row[columns.index("user_id")], row[columns.index("key")], row[columns.index("value")]):
           row[columns.index("confidence")] for row in snapshot}, now_expected, "snapshot_beliefs")


@pytest.mark.parametrize("fold", ["fold_all_observations", "fold_observations"])
def test_the_fold_builds_its_hash_joins_on_the_smaller_side_as_written(warehouse, fold: str, monkeypatch) -> None:
    """Issue 14: DuckDB estimated the materialised `evidence` far below its rows and built the join with the key
    totals on it (a RIGHT join): 4.3 s of an 8 s fold at 5 M events. The refresh folds with joins as written."""
    from selfmodel.beliefs import parameters
    from selfmodel.beliefs import refresh as refresh_module
    from warehouse.db import joins_as_written

    settings, con = warehouse
    con.execute("""insert into observations
        select 'u' || (i % 200), (['role', 'topic', 'language'])[1 + i % 3], 'v' || (i % 7), 1.0,
               $t0 + to_seconds(i * 3600), 'e' || i, 'test', 'test', '1', 'b1', 1, null, null
        from range(2000) as t(i)""", {"t0": T0}).fetchall()
    con.execute("insert into extracted_batches values ('b1', 1, 'test', 2000, ?)", [T0]).fetchall()
    params = {"as_of": T0 + timedelta(days=200), "watermark": 1, "prev_as_of": T0, "prev_watermark": 0}
    with parameters.registered(con, parameters.in_force(con, settings)):
        def join_types() -> list[str]:
            plan = "\n".join(row[1] for row in con.execute("explain " + load_sql(fold), params).fetchall())
            return re.findall(r"Join Type: (\w+)", plan)

        assert "RIGHT" in join_types()  # as estimated
        with joins_as_written(con):
            assert "RIGHT" not in join_types()
    used = []
    monkeypatch.setattr(refresh_module, "joins_as_written", lambda con: used.append(con) or joins_as_written(con))
    refresh_beliefs(con, settings, as_of=T0 + timedelta(days=200))
    assert used == [con]


@pytest.mark.parametrize("fold", ["fold_all_observations", "fold_observations"])
def test_the_fold_reads_observations_in_place_instead_of_copying_them(warehouse, fold: str) -> None:
    """Issue 14: a CTE read twice is materialised by DuckDB; the fold's `scope` (every observation's columns, 13.7 M
    rows at 5 M events) read by both halves of effective_observations was copied once more that way. So was an
    incremental fold's `counted` (every observation in the window, read for the touched groups and for their
    scope): 8.5 s of a 10 M-event warehouse's incremental refresh with nothing new."""
    from selfmodel.beliefs import parameters

    settings, con = warehouse
    seed_observations(con, random_observations(random.Random(3), 50), 1)
    with parameters.registered(con, parameters.in_force(con, settings)):
        plan = "\n".join(row[1] for row in con.execute(
            "explain " + load_sql(fold), {"as_of": T0 + timedelta(days=200), "watermark": 1, "prev_as_of": T0,
                                          "prev_watermark": 0}).fetchall())
    assert not {"scope", "counted"} & set(re.findall(r"CTE Name: (\w+)", plan)), plan
