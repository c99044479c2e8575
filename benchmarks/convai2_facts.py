"""Fact recall and precision of the rule extractor on ConvAI2, through the warehouse (observations and beliefs).

    .venv/bin/python benchmarks/convai2_facts.py /work/shared/data/real/convai2_wild/data_volunteers.json
    .venv/bin/python benchmarks/convai2_facts.py DATA.json --llm-config llm.yaml   # and the LLM extractor's

With `--llm-config` (a YAML file holding an `llm:` section as in selfmodel.yaml: base_url, model, api_key_env,
prices, max_cost_usd_per_run) the LLM extractor is switched on as well, and the facts found at any confidence
are reported per extractor (`fact` the rules, `llm` the model), so the two are compared on the same users and
persona lines. It costs what one refresh of ConvAI2's 5,766 distinct user message texts (7,665 messages) costs at the
configured prices.

The file is ingested with the `convai2` adapter into a temporary warehouse (nothing is written beside the
data or in the repo) and beliefs are refreshed with the default settings (as of the data's end). Then, per
user (the humans: participant1, whose turns are `message` events):

  ground truth  the user's persona lines: labels `persona` of that user (user_profile of every dialog the
                user had; distinct after normalising). Bots' personas are not counted: bots write no messages.
  facts         key `fact`, distinct (user, value):
                  * "any confidence": every value in `observations` (whatever the extractor found once);
                  * "served": values in the `beliefs` view at or above beliefs.serving_threshold.

Matching, on text normalised the same way for both sides (normalise_phrase: lower case, contractions spelled
out; then every character but letters, digits, apostrophes and spaces dropped; single spaces):

  contained  the fact's words are a contiguous run of words of one of the user's persona lines, or the
             line's words a run of the fact's ("i have two dogs" in "i have two dogs and a cat");
  overlap    token F1 (over word multisets, as SQuAD / ParlAI) >= 0.6 with one of the user's lines, or contained.

precision = facts that match one of the user's persona lines / facts;
recall    = persona lines matched by some fact of the same user / persona lines.

In the wild evaluation the humans were *given* a persona and may or may not use it, and they also say true
things about themselves that are not in it: both figures are floors for what the extractor gets right.
Run on demand; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import yaml

from selfmodel.beliefs.extractors.text import normalise_phrase
from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.ingest import ingest
from selfmodel.settings import load_settings
from warehouse.db import connect

F1_THRESHOLD = 0.6


def words(text: str) -> tuple[str, ...]:
    return tuple(re.sub(r"[^\w' ]", " ", normalise_phrase(text)).split())


def token_f1(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def contains_run(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    return any(longer[start:start + len(shorter)] == shorter for start in range(len(longer) - len(shorter) + 1))


def matches(fact: tuple[str, ...], line: tuple[str, ...], criterion: str) -> bool:
    if not fact or not line:
        return False
    contained = contains_run(line, fact) or contains_run(fact, line)
    return contained if criterion == "contained" else contained or token_f1(fact, line) >= F1_THRESHOLD


def score(facts: dict[str, set], personas: dict[str, set], criterion: str) -> dict:
    """Precision and recall of `facts` against `personas`, both {user: {word tuples}}."""
    correct = recalled = 0
    for user, values in facts.items():
        lines = personas.get(user, set())
        correct += sum(any(matches(value, line, criterion) for line in lines) for value in values)
    for user, lines in personas.items():
        values = facts.get(user, set())
        recalled += sum(any(matches(value, line, criterion) for value in values) for line in lines)
    return {"facts": sum(map(len, facts.values())), "correct": correct,
            "lines": sum(map(len, personas.values())), "recalled": recalled}


def grouped(rows: list[tuple[str, str]]) -> dict[str, set]:
    by_user: dict[str, set] = defaultdict(set)
    for user, text in rows:
        tokens = words(text)
        if tokens:
            by_user[user].add(tokens)
    return dict(by_user)


def build_warehouse(data: Path, folder: Path, llm: dict | None = None):
    config = folder / "selfmodel.yaml"
    config.write_text(yaml.safe_dump({
        "warehouse": {"path": "warehouse.duckdb", "analyst_copy": None},
        "sources": [{"name": "convai2", "format": "convai2", "path": str(data.resolve())}],
        **({"llm": llm, "beliefs": {"extractors": {"llm": {"enabled": True}}}} if llm else {}),
    }), encoding="utf-8")
    settings = load_settings(config, environ={})  # the key, if any, is read from the environment when used
    [report] = ingest(settings)
    if report.status != "committed":
        raise SystemExit(f"ingest failed: {report.error}")
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings)
    finally:
        con.close()
    return settings


def ratio(part: int, whole: int) -> str:
    return f"{part / whole:6.2%}" if whole else "   n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a ConvAI2 wild-evaluation JSON file (a list of dialogs)")
    parser.add_argument("--llm-config", type=Path, default=None,
                        help="a YAML file with an `llm:` section: also run the LLM extractor and report it apart")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"{args.path} is not a file", file=sys.stderr)
        return 2
    llm = None
    if args.llm_config is not None:
        llm = (yaml.safe_load(args.llm_config.read_text(encoding="utf-8")) or {}).get("llm")
        if not isinstance(llm, dict):
            print(f"{args.llm_config} has no `llm:` section", file=sys.stderr)
            return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        settings = build_warehouse(args.path, Path(folder), llm)
        threshold = settings.beliefs.serving_threshold
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
        try:
            humans = "select distinct user_id from events where kind = 'message'"
            personas = grouped(con.execute(f"select user_id, value from labels where label = 'persona' "
                                           f"and user_id in ({humans})").fetchall())
            observed = grouped(con.execute("select distinct user_id, value from observations where key = 'fact'")
                               .fetchall())
            by_extractor = {extractor: grouped(con.execute(
                "select distinct user_id, value from observations where key = 'fact' and extractor = ?",
                [extractor]).fetchall())
                for [extractor] in con.execute("select distinct extractor from observations where key = 'fact' "
                                               "order by all").fetchall()}
            served = grouped(con.execute("select user_id, value from beliefs where key = 'fact' and confidence >= ?",
                                         [threshold]).fetchall())
            [(users,)] = con.execute(f"select count(*) from ({humans})").fetchall()
            [(as_of, top)] = con.execute("select max(as_of), max(confidence) from beliefs "
                                         "where key = 'fact'").fetchall()
        finally:
            con.close()
    elapsed = time.perf_counter() - started

    print(f"{users} users with messages, {sum(map(len, personas.values()))} distinct persona lines; beliefs as of "
          f"{as_of}; highest fact confidence {top if top is None else round(top, 3)}; {elapsed:.1f}s")
    print(f"{'facts':28} {'users':>5} {'facts':>6} | {'criterion':9} {'precision':>9} {'recall':>7} "
          f"{'correct':>7} {'recalled':>8}")
    rows = [("any confidence", observed)]
    if len(by_extractor) > 1:
        rows += [(f"  of which by {extractor}", facts) for extractor, facts in by_extractor.items()]
    rows.append((f"served (>= {threshold:g})", served))
    for name, facts in rows:
        for criterion in ("contained", "overlap"):
            s = score(facts, personas, criterion)
            print(f"{name:28} {len(facts):5d} {s['facts']:6d} | {criterion:9} {ratio(s['correct'], s['facts']):>9} "
                  f"{ratio(s['recalled'], s['lines']):>7} {s['correct']:7d} {s['recalled']:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
