"""Measure the `fact` (and `role`) extractors against ConvAI2 persona lines.

    .venv/bin/python benchmarks/fact_extractor_vs_personas.py /work/shared/data/real/convai2_wild/data_volunteers.json

Each dialog's human turns (sender_class "Human") are run through FactExtractor and RoleExtractor as
`message` events; a role finding counts as the statement "i am a <role>". Persona lines of the
dialog's `user_profile` are the ground truth. Two match criteria, both on text normalised the same
way (lower case, contractions spelled out, punctuation dropped, single spaces):

  * exact:   the normalised finding equals the normalised persona line;
  * overlap: token F1 (over word multisets, as in SQuAD / ParlAI) >= 0.6.

precision = share of findings (distinct per dialog) that match one of that dialog's persona lines;
recall    = share of persona lines matched by some finding of their dialog.

In the wild evaluation humans were *given* a persona and may or may not use it, and they also say true
things about themselves that are not in it, so both figures are floors. `reachable` is the share of
persona lines that some human turn of the dialog says near-verbatim (token F1 >= 0.6 with the whole
turn or one of its sentences): an upper bound for recall by any extractor that keeps close to the words.

--show N prints N random unmatched findings and N reachable-but-missed persona lines, to read by eye.
Run on demand; it is not part of the test suite, and it copies nothing from the data set into the repo.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

from selfmodel.beliefs.extractors import load_yaml_mapping
from selfmodel.beliefs.extractors.base import EventView
from selfmodel.beliefs.extractors.fact import FactExtractor
from selfmodel.beliefs.extractors.role import RoleExtractor
from selfmodel.beliefs.extractors.text import normalise_phrase, sentences

THRESHOLD = 0.6


def normalised_tokens(text: str) -> list[str]:
    return re.sub(r"[^\w' ]", " ", normalise_phrase(text)).split()


def token_f1(a: list[str], b: list[str]) -> float:
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def matches(finding: list[str], persona: list[str], exact: bool) -> bool:
    return finding == persona if exact else token_f1(finding, persona) >= THRESHOLD


def human_turns(dialog: dict) -> list[str]:
    return [turn.get("text") or "" for turn in dialog.get("dialog", []) if turn.get("sender_class") == "Human"]


def dialog_findings(dialog: dict, extractors: dict) -> dict[str, set[str]]:
    """Per extractor name, the distinct statements it found in the dialog's human turns."""
    found: dict[str, set[str]] = {name: set() for name in extractors}
    for position, text in enumerate(human_turns(dialog)):
        event = EventView(event_id=str(position), user_id="human", kind="message", text=text)
        for name, extractor in extractors.items():
            for finding in extractor(event):
                found[name].add(finding.value if finding.key == "fact" else f"i am a {finding.value}")
    return found


def evaluate(dialogs: list[dict], extractors: dict, show: int, seed: int) -> dict:
    names = [*extractors, "fact+role"]
    counts = {name: Counter() for name in names}
    unmatched: dict[str, list[tuple[str, list[str]]]] = {name: [] for name in names}
    missed_reachable: list[tuple[str, list[str]]] = []
    persona_lines = reachable = 0
    for dialog in dialogs:
        personas = [normalised_tokens(line) for line in dialog.get("user_profile") or [] if line.strip()]
        personas = [tokens for tokens in personas if tokens]
        persona_lines += len(personas)
        turns = human_turns(dialog)
        pieces = [normalised_tokens(piece) for text in turns for piece in [text, *sentences(text)]]
        reachable_lines = [p for p in personas if any(token_f1(piece, p) >= THRESHOLD for piece in pieces if piece)]
        reachable += len(reachable_lines)
        found = dialog_findings(dialog, extractors)
        found["fact+role"] = set().union(*found.values())
        for name in names:
            statements = [normalised_tokens(value) for value in sorted(found[name])]
            for exact, label in ((True, "exact"), (False, "overlap")):
                counts[name][f"found_{label}"] += sum(any(matches(s, p, exact) for p in personas) for s in statements)
                counts[name][f"recalled_{label}"] += sum(any(matches(s, p, exact) for s in statements) for p in personas)
            counts[name]["findings"] += len(statements)
            unmatched[name] += [(" ".join(s), turns) for s in statements
                                if not any(matches(s, p, False) for p in personas)]
            if name == "fact+role":
                missed_reachable += [(" ".join(p), turns) for p in reachable_lines
                                     if not any(matches(s, p, False) for s in statements)]
    rng = random.Random(seed)
    if show:
        print(f"-- {show} random findings that match no persona line (fact+role):")
        for statement, _ in rng.sample(unmatched["fact+role"], min(show, len(unmatched["fact+role"]))):
            print("   ", statement)
        print(f"-- {show} random persona lines a human said near-verbatim that no finding matches:")
        for line, turns in rng.sample(missed_reachable, min(show, len(missed_reachable))):
            said = max(turns, key=lambda t: token_f1(normalised_tokens(t), line.split()))
            print(f"    {line!r:60}  said: {said!r}")
    return {"dialogs": len(dialogs), "persona_lines": persona_lines, "reachable": reachable, "counts": counts}


def ratio(part: int, whole: int) -> str:
    return f"{part / whole:6.1%}" if whole else "   n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a ConvAI2 wild-evaluation JSON file (a list of dialogs)")
    parser.add_argument("--roles", type=Path, default=None, help="role lexicon (default: the packaged one)")
    parser.add_argument("--show", type=int, default=0, help="print N unmatched findings and missed lines")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    dialogs = json.loads(args.path.read_text(encoding="utf-8"))
    if not isinstance(dialogs, list):
        print(f"{args.path} does not hold a list of dialogs", file=sys.stderr)
        return 2
    dialogs = [d for d in dialogs if isinstance(d, dict)]
    extractors = {"fact": FactExtractor(), "role": RoleExtractor(load_yaml_mapping(args.roles, "roles.yaml"))}
    started = time.perf_counter()
    result = evaluate(dialogs, extractors, args.show, args.seed)
    elapsed = time.perf_counter() - started

    lines, reachable = result["persona_lines"], result["reachable"]
    turns = sum(len(human_turns(d)) for d in dialogs)
    print(f"{result['dialogs']} dialogs, {turns} human turns, {lines} persona lines, "
          f"{reachable} ({ratio(reachable, lines).strip()}) said near-verbatim by the human; {elapsed:.1f}s")
    print(f"{'extractor':10} {'findings':>8}  {'P exact':>7} {'P >=0.6':>7}  {'R exact':>7} {'R >=0.6':>7}"
          f"  {'R>=0.6 of reachable':>19}")
    for name, c in result["counts"].items():
        print(f"{name:10} {c['findings']:8d}  {ratio(c['found_exact'], c['findings']):>7} "
              f"{ratio(c['found_overlap'], c['findings']):>7}  {ratio(c['recalled_exact'], lines):>7} "
              f"{ratio(c['recalled_overlap'], lines):>7}  {ratio(c['recalled_overlap'], reachable):>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
