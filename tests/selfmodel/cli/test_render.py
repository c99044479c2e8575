"""What people read: the belief listing names exactly how many beliefs it left out."""

from __future__ import annotations

from datetime import datetime, timezone

from click.testing import CliRunner

from selfmodel.cli.render import print_beliefs

AT = datetime(2018, 9, 1, tzinfo=timezone.utc)


def model_with(count: int) -> dict:
    return {"as_of": AT, "beliefs": [
        {"key": f"topic@t{i}", "value": f"t{i}", "confidence": 0.9 - i / 100, "evidence_count": 2,
         "last_evidence_at": AT} for i in range(count)]}


def printed(model: dict, show_all: bool) -> str:
    with CliRunner().isolation() as (out, _, _):
        print_beliefs(model, "u1", 0.6, show_all)
    return out.getvalue().decode()


def test_the_listing_counts_the_beliefs_it_leaves_out() -> None:
    text = printed(model_with(35), show_all=False)
    assert "t29" in text and "t30" not in text
    assert "... 5 less confident beliefs (--all lists them)" in text


def test_all_lists_every_belief_and_leaves_nothing_out() -> None:
    text = printed(model_with(35), show_all=True)
    assert "t34" in text and "less confident" not in text
    assert "less confident" not in printed(model_with(8), show_all=False)
