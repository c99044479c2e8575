"""StackExchangeAdapter on a tiny hand-written dump: owners, bots, votes, accepts, tags and labels."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.settings import SourceSettings
from selfmodel.sources.base import FileRead
from selfmodel.sources.stackexchange import MissingDumpFiles, StackExchangeAdapter, parse_tags

NOW = FixedClock(datetime(2025, 1, 1, tzinfo=timezone.utc))

TAGS = ['<row Id="1" TagName="qiskit" Count="2" ExcerptPostId="10" WikiPostId="11" />']
POSTS = [
    # line 3: a question with an accepted answer (2)
    '<row Id="1" PostTypeId="1" AcceptedAnswerId="2" CreationDate="2019-01-01T10:00:00.000" Score="3" '
    'Body="&lt;p&gt;How do I use &lt;code&gt;execute&lt;/code&gt;?&lt;/p&gt;" OwnerUserId="5" '
    'Title="Running circuits" Tags="&lt;qiskit&gt;&lt;simulation&gt;" AnswerCount="2" />',
    # line 4: the accepted answer
    '<row Id="2" PostTypeId="2" ParentId="1" CreationDate="2019-01-02T10:00:00.000" Score="5" '
    'Body="&lt;p&gt;Like this.&lt;/p&gt;" OwnerUserId="6" />',
    # line 5: an answer whose owner is known only by display name
    '<row Id="3" PostTypeId="2" ParentId="1" CreationDate="2019-01-03T10:00:00.000" Score="0" '
    'Body="&lt;p&gt;Or that.&lt;/p&gt;" OwnerDisplayName="Ghost Writer " />',
    # line 6: written by the Community bot
    '<row Id="4" PostTypeId="1" CreationDate="2019-01-04T10:00:00.000" Body="&lt;p&gt;Bumped.&lt;/p&gt;" '
    'OwnerUserId="-1" Title="Old" Tags="|misc|" />',
    # line 7: broken XML (an attribute value never closed)
    '<row Id="5" PostTypeId="1" Body="oops />',
    # line 8: a tag wiki excerpt, tagged through Tags.xml
    '<row Id="10" PostTypeId="4" CreationDate="2019-01-05T10:00:00.000" Body="&lt;p&gt;Qiskit is an SDK.&lt;/p&gt;" '
    'OwnerUserId="5" />',
    # line 9: newer dumps write tags as |a|b|
    '<row Id="6" PostTypeId="1" CreationDate="2019-01-06T10:00:00.000" Body="&lt;p&gt;New format&lt;/p&gt;" '
    'OwnerUserId="6" Title="Tags" Tags="|noise|error-correction|" />',
]
COMMENTS = [
    '<row Id="1" PostId="2" Score="1" Text="Thanks, that works." CreationDate="2019-01-02T11:00:00.000" UserId="5" />',
    '<row Id="2" PostId="1" Score="0" Text="Which version?" CreationDate="2019-01-01T11:00:00.000" UserDisplayName="anon42" />',
    '<row Id="3" PostId="1" Score="0" Text="Auto comment" CreationDate="2019-01-01T12:00:00.000" UserId="-1" />',
]
VOTES = [
    '<row Id="1" PostId="2" VoteTypeId="1" CreationDate="2019-01-03T00:00:00.000" />',
    '<row Id="2" PostId="1" VoteTypeId="2" CreationDate="2019-01-03T00:00:00.000" />',
    '<row Id="3" PostId="999" VoteTypeId="2" CreationDate="2019-01-03T00:00:00.000" />',
    '<row Id="4" PostId="3" VoteTypeId="3" CreationDate="2019-01-04T00:00:00.000" />',
    '<row Id="5" PostId="1" VoteTypeId="5" UserId="6" CreationDate="2019-01-04T00:00:00.000" />',
    '<row Id="6" PostId="1" VoteTypeId="8" UserId="5" BountyAmount="50" CreationDate="2019-01-05T00:00:00.000" />',
]
USERS = [
    '<row Id="-1" Reputation="1" DisplayName="Community" AboutMe="&lt;p&gt;I am a bot&lt;/p&gt;" '
    'CreationDate="2018-01-01T00:00:00.000" LastAccessDate="2018-01-01T00:00:00.000" />',
    '<row Id="5" Reputation="101" DisplayName="Alice" Location="Delft" '
    'AboutMe="&lt;p&gt;SECRET-ABOUT-ME marker&lt;/p&gt;" CreationDate="2018-01-01T00:00:00.000" '
    'LastAccessDate="2020-05-01T00:00:00.000" />',
]
BADGES = ['<row Id="1" UserId="5" Name="Teacher" Date="2019-02-01T00:00:00.000" Class="3" TagBased="False" />']


def write_dump(folder: Path, *, crlf: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    newline = "\r\n" if crlf else "\n"
    for name, rows in (("Tags", TAGS), ("Posts", POSTS), ("Comments", COMMENTS), ("Votes", VOTES),
                       ("Users", USERS), ("Badges", BADGES)):
        root = name.lower()
        lines = ['<?xml version="1.0" encoding="utf-8"?>', f"<{root}>", *(f"  {row}" for row in rows), f"</{root}>"]
        (folder / f"{name}.xml").write_bytes(b"\xef\xbb\xbf" + newline.join(lines).encode() + newline.encode())
    return folder


def read_dump(folder: Path) -> tuple[list[dict], list]:
    source = StackExchangeAdapter(folder, SourceSettings(name="qc", format="stackexchange", path=str(folder)),
                                  chunk_records=1000, max_record_bytes=100_000)
    reads = [FileRead(path=path, label=path.name) for path in source.discover()]
    labels: list = []
    records = [row for chunk in source.read(reads, labels) for row in chunk.to_pylist()]
    return records, labels


def docs_by_id(records: list[dict]) -> dict[str, dict]:
    return {doc["event_id"]: doc for doc in (json.loads(r["doc"]) for r in records if r["doc"])}


@pytest.mark.parametrize("crlf", [False, True])
def test_every_row_of_posts_comments_and_votes_is_one_record(tmp_path: Path, crlf: bool) -> None:
    records, _ = read_dump(write_dump(tmp_path / "dump", crlf=crlf))

    assert [(r["file"], r["line_no"]) for r in records] == (
        [("Posts.xml", n) for n in range(3, 10)]
        + [("Comments.xml", n) for n in range(3, 6)]
        + [("Votes.xml", n) for n in range(3, 9)]
    )
    assert set(docs_by_id(records)) == {
        "post:1", "post:2", "post:3", "post:4", "post:10", "post:6",
        "comment:1", "comment:2", "comment:3",
        "vote:1", "vote:2", "vote:3", "vote:4", "vote:5", "vote:6",
    }


def test_a_row_that_is_not_xml_is_marked_with_its_line(tmp_path: Path) -> None:
    records, _ = read_dump(write_dump(tmp_path / "dump"))

    [broken] = [r for r in records if r["pre_reason"] == "xml_error"]
    assert (broken["file"], broken["line_no"], broken["doc"]) == ("Posts.xml", 7, None)
    assert broken["raw_text"] == '  <row Id="5" PostTypeId="1" Body="oops />'
    # the rows after it still load
    assert docs_by_id(records)["post:10"]["text"] == "Qiskit is an SDK."


def test_questions_answers_and_comments_are_messages_of_their_owner(tmp_path: Path) -> None:
    docs = docs_by_id(read_dump(write_dump(tmp_path / "dump"))[0])

    question, answer = docs["post:1"], docs["post:2"]
    assert (question["user_id"], question["kind"], question["session_id"], question["reply_to"]) == (
        "5", "message", "thread:1", None)
    assert question["text"] == "Running circuits\n\nHow do I use `execute`?"
    assert question["occurred_at"] == "2019-01-01T10:00:00.000"
    assert (answer["user_id"], answer["session_id"], answer["reply_to"], answer["text"]) == (
        "6", "thread:1", "post:1", "Like this.")
    comment = docs["comment:1"]
    assert (comment["user_id"], comment["kind"], comment["reply_to"], comment["session_id"], comment["text"]) == (
        "5", "message", "post:2", "thread:1", "Thanks, that works.")


def test_owners_known_only_by_display_name(tmp_path: Path) -> None:
    docs = docs_by_id(read_dump(write_dump(tmp_path / "dump"))[0])

    assert docs["post:3"]["user_id"] == "name:Ghost Writer"
    assert docs["post:3"]["attributes"]["owner_display_name"] == "Ghost Writer "
    assert docs["comment:2"]["user_id"] == "name:anon42"


def test_answers_and_comments_inherit_their_question_tags(tmp_path: Path) -> None:
    docs = docs_by_id(read_dump(write_dump(tmp_path / "dump"))[0])

    assert docs["post:1"]["tags"] == ["qiskit", "simulation"]
    assert docs["post:2"]["tags"] == ["qiskit", "simulation"]
    assert docs["comment:1"]["tags"] == ["qiskit", "simulation"]
    assert docs["post:6"]["tags"] == ["noise", "error-correction"]
    assert docs["post:10"]["tags"] == ["qiskit"]  # a tag wiki excerpt gets its tag from Tags.xml


def test_only_the_accepted_answer_is_marked_accepted(tmp_path: Path) -> None:
    docs = docs_by_id(read_dump(write_dump(tmp_path / "dump"))[0])

    assert docs["post:2"]["attributes"]["is_accepted_answer"] is True
    assert docs["post:3"]["attributes"]["is_accepted_answer"] is False
    assert docs["post:1"]["attributes"]["is_accepted_answer"] is False
    assert docs["post:1"]["attributes"]["accepted_answer_id"] == "2"


def test_votes_are_feedback_on_the_post_and_accepts_belong_to_the_asker(tmp_path: Path) -> None:
    docs = docs_by_id(read_dump(write_dump(tmp_path / "dump"))[0])

    def vote(n: int) -> tuple:
        doc = docs[f"vote:{n}"]
        attrs = doc["attributes"]
        return doc["kind"], doc["user_id"], doc["reply_to"], doc["rating"], attrs["vote_type"], attrs["target_user_id"]

    assert vote(1) == ("feedback", "5", "post:2", 1.0, "accept", "6")  # the asker (5) accepted 6's answer
    assert vote(2) == ("feedback", "anonymous", "post:1", 1.0, "upvote", "5")
    assert vote(4) == ("feedback", "anonymous", "post:3", -1.0, "downvote", "name:Ghost Writer")
    assert vote(5) == ("feedback", "6", "post:1", 1.0, "favorite", "5")
    assert docs["vote:6"]["attributes"]["bounty_amount"] == 50
    assert docs["vote:2"]["attributes"]["voter_known"] is False and docs["vote:5"]["attributes"]["voter_known"]


def test_bots_and_votes_on_deleted_posts_are_marked_for_quarantine(tmp_path: Path) -> None:
    records, _ = read_dump(write_dump(tmp_path / "dump"))

    marked = {(r["file"], r["line_no"]): (r["pre_reason"], r["pre_detail"]) for r in records if r["pre_reason"]}
    assert marked == {
        ("Posts.xml", 6): ("bot_account", "owner -1 is a bot account"),
        ("Posts.xml", 7): ("xml_error", marked[("Posts.xml", 7)][1]),
        ("Comments.xml", 5): ("bot_account", "author -1 is a bot account"),
        ("Votes.xml", 5): ("vote_on_deleted_post", "post 999 is not in Posts.xml"),
    }


def test_users_and_badges_become_labels_only(tmp_path: Path) -> None:
    records, labels = read_dump(write_dump(tmp_path / "dump"))

    alice = sorted((label.label, label.value) for label in labels if label.user_id == "5")
    assert alice == [("about_me", "SECRET-ABOUT-ME marker"), ("badge", "Teacher"), ("display_name", "Alice"),
                     ("location", "Delft"), ("reputation", "101")]
    assert all("SECRET-ABOUT-ME" not in r["raw_text"] and "SECRET-ABOUT-ME" not in (r["doc"] or "")
               for r in records)


def test_a_dump_without_its_required_files_is_refused(tmp_path: Path) -> None:
    folder = write_dump(tmp_path / "dump")
    (folder / "Votes.xml").unlink()
    source = StackExchangeAdapter(folder, SourceSettings(name="qc", format="stackexchange", path=str(folder)),
                                  chunk_records=10, max_record_bytes=1000)

    with pytest.raises(MissingDumpFiles, match="lacks Votes.xml"):
        source.discover()


def test_parse_tags_reads_both_dump_formats() -> None:
    assert parse_tags("<a><b-c>") == ["a", "b-c"]
    assert parse_tags("|a|b-c|") == ["a", "b-c"]
    assert parse_tags("") == [] and parse_tags(None) == []


def test_the_dump_ingests_with_every_row_accounted_for(tmp_path: Path, make_settings) -> None:
    write_dump(tmp_path / "dump", crlf=True)
    settings = make_settings([{"name": "qc", "format": "stackexchange", "path": "dump"}])

    [report] = ingest(settings, clock=NOW)

    assert report.status == "committed", report.error
    assert (report.rows_read, report.loaded, report.duplicates, report.quarantined) == (16, 12, 0, 4)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        reasons = con.execute("select file, line_no, reason from quarantine order by file, line_no").fetchall()
        assert reasons == [("dump/Comments.xml", 5, "bot_account"), ("dump/Posts.xml", 6, "bot_account"),
                           ("dump/Posts.xml", 7, "xml_error"), ("dump/Votes.xml", 5, "vote_on_deleted_post")]
        [(leaks,)] = con.execute(
            "select count(*) from events where text like '%SECRET-ABOUT-ME%' or attributes::varchar like '%SECRET%'"
        ).fetchall()
        assert leaks == 0
        assert con.execute("select count(*) from labels where source = 'qc'").fetchone()[0] == report.labels_loaded == 8  # 3 for Community, 5 for Alice
        assert con.execute("select occurred_at from events where event_id = 'post:1'").fetchone()[0] == datetime(
            2019, 1, 1, 10, tzinfo=timezone.utc)
    finally:
        con.close()


def test_a_changed_dump_is_re_read_whole_and_old_rows_come_back_as_duplicates(tmp_path: Path, make_settings) -> None:
    folder = write_dump(tmp_path / "dump")
    settings = make_settings([{"name": "qc", "format": "stackexchange", "path": "dump"}])
    ingest(settings, clock=NOW)
    votes = folder / "Votes.xml"
    votes.write_text(votes.read_text(encoding="utf-8-sig").replace(
        "</votes>", '  <row Id="7" PostId="6" VoteTypeId="2" CreationDate="2019-01-07T00:00:00.000" />\n</votes>'),
        encoding="utf-8")

    [report] = ingest(settings, clock=NOW)

    assert (report.rows_read, report.loaded, report.duplicates, report.quarantined) == (17, 1, 16, 0)
    assert {entry["path"]: entry["action"] for entry in report.files}["dump/Votes.xml"] == "rewritten"
    assert {entry["path"]: entry["action"] for entry in report.files}["dump/Posts.xml"] == "reread"
