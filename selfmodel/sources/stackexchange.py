"""Stack Exchange data dump (Posts, Comments, Votes, Users; Tags and Badges optional).

Every `<row .../>` of a dump sits on its own line (newlines inside values are encoded as &#xA;), so
the files are streamed line by line and each line is parsed on its own: a broken row is quarantined
with its line number and the rows after it still load. Posts are read twice: a first, light pass
keeps each post's type, owner and thread, which answers, comments and votes need (answers inherit
their question's tags; a vote is feedback on a post and names whose post it was).

Mapping:
- questions, answers, comments -> `message` events of their owner; owners known only by display
  name get user_id ``name:<DisplayName>``; posts of bot accounts (Community, -1) are quarantined as
  `bot_account`, since software is not a user to model.
- votes -> `feedback` on ``post:<id>`` (up +1, down -1, accept +1, ...). The dump hides who cast
  up and down votes, so those carry user_id ``anonymous``; accepts are the asker's. Votes on posts
  missing from the dump (deleted) are quarantined as `vote_on_deleted_post`.
- Users (AboutMe, Reputation, Location, DisplayName) and Badges -> labels, never events.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from selfmodel.sources.base import Adapter, FileRead, Label, RecordBatchBuilder
from selfmodel.sources.html_text import html_to_text
from selfmodel.sources.lines import read_line_blocks

FILE_ORDER = ("Tags", "Posts", "Comments", "Votes", "Users", "Badges")
REQUIRED_FILES = ("Posts", "Comments", "Votes", "Users")
ANONYMOUS_VOTER = "anonymous"

POST_TYPES = {
    "1": "question",
    "2": "answer",
    "3": "orphaned_tag_wiki",
    "4": "tag_wiki_excerpt",
    "5": "tag_wiki",
    "6": "moderator_nomination",
    "7": "wiki_placeholder",
    "8": "privilege_wiki",
}
# VoteTypeId -> (name, rating). A rating of None: a moderation action, not a judgement of quality.
VOTE_TYPES = {
    "1": ("accept", 1.0),
    "2": ("upvote", 1.0),
    "3": ("downvote", -1.0),
    "4": ("offensive", -1.0),
    "5": ("favorite", 1.0),
    "6": ("close", None),
    "7": ("reopen", None),
    "8": ("bounty_start", 1.0),
    "9": ("bounty_close", 1.0),
    "10": ("deletion", None),
    "11": ("undeletion", None),
    "12": ("spam", -1.0),
    "15": ("moderator_review", None),
    "16": ("approve_edit_suggestion", None),
}


class MissingDumpFiles(FileNotFoundError):
    pass


@dataclass(frozen=True)
class PostInfo:
    post_type: str
    owner: str | None
    thread: str  # the question id a post belongs to
    tags: tuple[str, ...]
    accepted_answer: str | None = None


def parse_tags(value: str | None) -> list[str]:
    """'<a><b>' (older dumps) or '|a|b|' (newer dumps) -> ['a', 'b']."""
    if not value:
        return []
    if value.startswith("<"):
        return re.findall(r"<([^<>]+)>", value)
    return [tag for tag in value.split("|") if tag]


def owner_id(attrs: dict[str, str], id_field: str, name_field: str) -> str | None:
    if attrs.get(id_field):
        return attrs[id_field]
    if attrs.get(name_field, "").strip():
        return "name:" + attrs[name_field].strip()
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class StackExchangeAdapter(Adapter):
    appendable = False
    reads_as_group = True  # votes and answers need Posts.xml, so a dump is read as one

    def discover(self) -> list[Path]:
        if not self.path.is_dir():
            raise MissingDumpFiles(f"{self.path} is not a folder holding a Stack Exchange dump")
        by_stem = {p.stem.lower(): p for p in self.path.iterdir() if p.suffix.lower() == ".xml"}
        missing = [name + ".xml" for name in REQUIRED_FILES if name.lower() not in by_stem]
        if missing:
            raise MissingDumpFiles(f"{self.path} lacks {', '.join(missing)}")
        return [by_stem[name.lower()] for name in FILE_ORDER if name.lower() in by_stem]

    # -- reading ---------------------------------------------------------------------------------

    def _rows(self, read: FileRead, builder: RecordBatchBuilder | None) -> Iterator[tuple[int, int, str, dict]]:
        """(line_no, offset, line text, attributes) for each parseable row; problems go to `builder`."""
        for block in read_line_blocks(read, self.max_record_bytes):
            problems = block.problems or [None] * len(block.texts)
            for index, (text, problem) in enumerate(zip(block.texts, problems)):
                line_no, offset = block.first_line_no + index, block.offsets[index]
                if problem is not None:
                    if builder is not None:
                        builder.add(file=read.label, line_no=line_no, byte_offset=offset, raw_text=text,
                                    raw_bytes=block.raw[index], pre_reason=problem[0], pre_detail=problem[1])
                    continue
                stripped = text.strip()
                if not stripped.startswith("<row"):
                    if _is_structure(stripped):
                        continue
                    if builder is not None:
                        builder.add(file=read.label, line_no=line_no, byte_offset=offset, raw_text=text,
                                    pre_reason="xml_error", pre_detail="a line that is neither a <row/> nor the document frame")
                    continue
                try:
                    element = ET.fromstring(stripped)
                except ET.ParseError as exc:
                    if builder is not None:
                        builder.add(file=read.label, line_no=line_no, byte_offset=offset, raw_text=text,
                                    pre_reason="xml_error", pre_detail=str(exc))
                    continue
                yield line_no, offset, text, element.attrib
            read.records = block.first_line_no + len(block.texts) - 1

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        by_name = {read.path.stem.lower(): read for read in reads}
        builder = RecordBatchBuilder(self.chunk_records)
        bots = set(self.options.bot_user_ids)

        wiki_tags: dict[str, str] = {}
        if "tags" in by_name:
            for _, _, _, attrs in self._rows(by_name["tags"], builder):
                for key in ("ExcerptPostId", "WikiPostId"):
                    if attrs.get(key) and attrs.get("TagName"):
                        wiki_tags[attrs[key]] = attrs["TagName"]

        posts = self._index_posts(by_name["posts"], wiki_tags)

        def add(line_no: int, offset: int, raw: str, read: FileRead, doc: dict | None,
                reason: str | None = None, detail: str | None = None) -> None:
            builder.add(file=read.label, line_no=line_no, byte_offset=offset, raw_text=raw,
                        doc=json.dumps(doc, ensure_ascii=False) if doc is not None else None,
                        pre_reason=reason, pre_detail=detail)

        read = by_name["posts"]
        for line_no, offset, raw, attrs in self._rows(read, builder):
            info = posts.get(attrs.get("Id", ""))
            doc = self._post_event(attrs, info, posts)
            reason = "bot_account" if attrs.get("OwnerUserId") in bots else None
            add(line_no, offset, raw, read, doc, reason, f"owner {attrs.get('OwnerUserId')} is a bot account" if reason else None)
            if builder.full:
                yield builder.take()

        read = by_name["comments"]
        for line_no, offset, raw, attrs in self._rows(read, builder):
            post = posts.get(attrs.get("PostId", ""))
            user = owner_id(attrs, "UserId", "UserDisplayName")
            doc = {
                "event_id": f"comment:{attrs.get('Id')}",
                "user_id": user,
                "occurred_at": attrs.get("CreationDate"),
                "kind": "message",
                "text": attrs.get("Text"),
                "session_id": f"thread:{post.thread}" if post else None,
                "reply_to": f"post:{attrs.get('PostId')}",
                "tags": list(post.tags) if post else [],
                "attributes": {"se_type": "comment", "score": _int(attrs.get("Score"))},
            }
            reason = "bot_account" if attrs.get("UserId") in bots else None
            add(line_no, offset, raw, read, doc, reason, f"author {attrs.get('UserId')} is a bot account" if reason else None)
            if builder.full:
                yield builder.take()

        read = by_name["votes"]
        for line_no, offset, raw, attrs in self._rows(read, builder):
            post_id = attrs.get("PostId", "")
            post = posts.get(post_id)
            vote_name, rating = VOTE_TYPES.get(attrs.get("VoteTypeId", ""), (f"type_{attrs.get('VoteTypeId')}", None))
            voter = attrs.get("UserId")
            if vote_name == "accept" and post is not None:
                voter = (posts.get(post.thread) or post).owner  # the asker accepts
            doc = {
                "event_id": f"vote:{attrs.get('Id')}",
                "user_id": voter or ANONYMOUS_VOTER,
                "occurred_at": attrs.get("CreationDate"),
                "kind": "feedback",
                "session_id": f"thread:{post.thread}" if post else None,
                "reply_to": f"post:{post_id}",
                "rating": rating,
                "tags": list(post.tags) if post else [],
                "attributes": {
                    "se_type": "vote",
                    "vote_type": vote_name,
                    "target_user_id": post.owner if post else None,
                    "voter_known": bool(voter),
                    "bounty_amount": _int(attrs.get("BountyAmount")),
                },
            }
            reason = detail = None
            if post is None:
                reason, detail = "vote_on_deleted_post", f"post {post_id} is not in Posts.xml"
            add(line_no, offset, raw, read, doc, reason, detail)
            if builder.full:
                yield builder.take()

        if "users" in by_name:
            for _, _, _, attrs in self._rows(by_name["users"], builder):
                labels.extend(_user_labels(attrs))
        if "badges" in by_name:
            for _, _, _, attrs in self._rows(by_name["badges"], builder):
                if attrs.get("UserId") and attrs.get("Name"):
                    labels.append(Label(attrs["UserId"], "badge", attrs["Name"], _timestamp(attrs.get("Date")),
                                        "tag_based" if attrs.get("TagBased") == "True" else None))
        if len(builder):
            yield builder.take()

    def _index_posts(self, read: FileRead, wiki_tags: dict[str, str]) -> dict[str, PostInfo]:
        # A throwaway FileRead: the manifest fields are filled by the second, recording pass.
        first_pass = FileRead(path=read.path)
        raw: dict[str, tuple[str, str | None, str | None, tuple[str, ...], str | None]] = {}
        for _, _, _, attrs in self._rows(first_pass, None):
            post_id = attrs.get("Id")
            if not post_id:
                continue
            tags = tuple(parse_tags(attrs.get("Tags")))
            if not tags and post_id in wiki_tags:
                tags = (wiki_tags[post_id],)
            raw[post_id] = (attrs.get("PostTypeId", ""), owner_id(attrs, "OwnerUserId", "OwnerDisplayName"),
                            attrs.get("ParentId"), tags, attrs.get("AcceptedAnswerId"))
        posts = {}
        for post_id, (post_type, owner, parent, tags, accepted) in raw.items():
            thread = parent if parent else post_id
            if parent and not tags and parent in raw:
                tags = raw[parent][3]
            posts[post_id] = PostInfo(post_type, owner, thread, tags, accepted)
        return posts

    @staticmethod
    def _post_event(attrs: dict[str, str], info: PostInfo | None, posts: dict[str, PostInfo]) -> dict:
        post_type = POST_TYPES.get(attrs.get("PostTypeId", ""), f"type_{attrs.get('PostTypeId')}")
        body = html_to_text(attrs.get("Body"))
        title = attrs.get("Title")
        parent = attrs.get("ParentId")
        return {
            "event_id": f"post:{attrs.get('Id')}",
            "user_id": owner_id(attrs, "OwnerUserId", "OwnerDisplayName"),
            "occurred_at": attrs.get("CreationDate"),
            "kind": "message",
            "text": f"{title}\n\n{body}" if title else body,
            "session_id": f"thread:{info.thread}" if info else None,
            "reply_to": f"post:{parent}" if parent else None,
            "tags": list(info.tags) if info else parse_tags(attrs.get("Tags")),
            "attributes": {
                "se_type": "post",
                "post_type": post_type,
                "title": title,
                "score": _int(attrs.get("Score")),
                "view_count": _int(attrs.get("ViewCount")),
                "answer_count": _int(attrs.get("AnswerCount")),
                "comment_count": _int(attrs.get("CommentCount")),
                "favorite_count": _int(attrs.get("FavoriteCount")),
                "accepted_answer_id": attrs.get("AcceptedAnswerId"),
                "is_accepted_answer": bool(parent and parent in posts
                                           and posts[parent].accepted_answer == attrs.get("Id")),
                "closed_date": attrs.get("ClosedDate"),
                "last_edit_date": attrs.get("LastEditDate"),
                "community_owned": attrs.get("CommunityOwnedDate") is not None,
                "owner_display_name": attrs.get("OwnerDisplayName"),
            },
        }


def _is_structure(line: str) -> bool:
    """The XML declaration, the root element's open and close tags, and blank lines."""
    return (
        line == ""
        or line.startswith("<?xml")
        or re.fullmatch(r"</?[A-Za-z]+>", line) is not None
    )


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _user_labels(attrs: dict[str, str]) -> list[Label]:
    user = attrs.get("Id")
    if not user:
        return []
    seen_at = _timestamp(attrs.get("LastAccessDate"))
    labels = []
    for field, label in (("Reputation", "reputation"), ("DisplayName", "display_name"), ("Location", "location")):
        if attrs.get(field):
            labels.append(Label(user, label, attrs[field], seen_at))
    about = html_to_text(attrs.get("AboutMe"))
    if about:
        labels.append(Label(user, "about_me", about, seen_at))
    return labels
