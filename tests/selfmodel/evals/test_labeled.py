"""Labeled cases name persona lines by a hash prefix, never by position: labels have no order."""

from __future__ import annotations

import hashlib

import pytest

from selfmodel.evals.labeled import Expectation, resolve_value
from warehouse.db import connect

LINES = ["i have two dogs.", "my favorite band is queen.", "i work in a shipyard.", "i like to ski."]


def prefix(line: str, length: int = 16) -> str:
    return hashlib.sha256(line.encode("utf-8")).hexdigest()[:length]


def expectation(sha256: str) -> Expectation:
    return Expectation(key="fact", min_confidence=0.3,
                       value_from_label={"label": "persona", "context": "dlg:1", "sha256": sha256})


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "wh.duckdb")
    yield con
    con.close()


@pytest.mark.parametrize("order", [LINES, LINES[::-1], LINES[1:] + LINES[:1]])
def test_a_label_line_is_found_by_its_hash_in_whatever_order_the_lines_were_stored(con, order) -> None:
    for line in order:
        con.execute("insert into labels values ('convai2', 'u', 'persona', ?, null, 'dlg:1', 'b1')", [line]).fetchall()
    con.execute("insert into labels values ('convai2', 'u', 'persona', 'i have two cats.', null, 'dlg:2', 'b1')").fetchall()
    for line in LINES:
        assert resolve_value(con, "convai2", "u", expectation(prefix(line))) == line


def test_an_unknown_hash_resolves_to_nothing_so_the_case_cannot_pass(con) -> None:
    con.execute("insert into labels values ('convai2', 'u', 'persona', 'i have two dogs.', null, 'dlg:1', 'b1')").fetchall()
    assert resolve_value(con, "convai2", "u", expectation(prefix("i have two cats."))) is None
    assert resolve_value(con, "convai2", "other", expectation(prefix("i have two dogs."))) is None


def test_a_hash_prefix_must_be_hex_and_long_enough_to_tell_lines_apart() -> None:
    with pytest.raises(ValueError):
        expectation("abc")
    with pytest.raises(ValueError):
        expectation("not-hex-at-all!")


def test_the_committed_convai2_cases_name_lines_by_hash() -> None:
    import yaml

    from tests.conftest import REPO_ROOT

    cases = yaml.safe_load((REPO_ROOT / "expectations" / "evals" / "labeled_convai2.yaml").read_text())["cases"]
    refs = [e["value_from_label"] for c in cases for e in c["expect"] if "value_from_label" in e]
    assert refs and all(set(ref) == {"label", "context", "sha256"} for ref in refs)
