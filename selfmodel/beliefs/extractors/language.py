"""language: the language of the user's own messages, by py3langid (its model ships in the package;
nothing is downloaded). Short or unclear text gives no evidence rather than a guess.

Scripts that name their language outright (Han without kana: Chinese; kana: Japanese; Hangul:
Korean; Thai) are decided by counting characters, which is exact where the n-gram model is unsure
on a short line; everything else goes to the model.

Many texts at once (detect_many, LanguageExtractor.findings_of_many) walk the model's byte automaton for
all of them together in numpy, then score each text with py3langid's own arithmetic: the same answer as
one text at a time, bit for bit (tests/selfmodel/beliefs/test_columnar_extraction.py), several times faster.
"""

from __future__ import annotations

import math
import re
from functools import cache

import numpy as np

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean, word_units

NAME, VERSION = "language", "2"

MIN_WORDS = 3
MIN_LETTERS = 12
MIN_PROBABILITY = 0.8
MAX_CHARS = 400
LETTER = re.compile(r"[^\W\d_]")
MIN_SCRIPT_SHARE = 0.8  # of the letters, for a script to decide the language
SCRIPTS = {
    "han": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "kana": re.compile(r"[\u3040-\u30ff]"),
    "hangul": re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"),
    "thai": re.compile(r"[\u0e00-\u0e7f]"),
}


@cache
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def _by_script(prose: str, letters: int) -> tuple[str, float] | None:
    if prose.isascii():  # none of these scripts
        return None
    counts = {name: len(pattern.findall(prose)) for name, pattern in SCRIPTS.items()}
    east_asian = counts["han"] + counts["kana"]
    if counts["kana"] and east_asian / letters >= MIN_SCRIPT_SHARE:
        return "ja", round(east_asian / letters, 3)
    for name, language in (("han", "zh"), ("hangul", "ko"), ("thai", "th")):
        if counts[name] / letters >= MIN_SCRIPT_SHARE:
            return language, round(counts[name] / letters, 3)
    return None


def _before_model(prose: str) -> tuple[str, float] | None | str:
    """What detect decides without the model: a result, None, or the text the model must classify."""
    letters = len(LETTER.findall(prose))
    if not letters or word_units(prose) < MIN_WORDS:
        return None
    by_script = _by_script(prose, letters)
    if by_script is not None:
        return by_script
    if letters < MIN_LETTERS:
        return None
    # The first few hundred characters decide as well as the whole text, at a fraction of the cost.
    return prose[:MAX_CHARS]


def _confident(language: str, probability) -> tuple[str, float] | None:
    return (language, float(probability)) if probability >= MIN_PROBABILITY else None


def detect(prose: str) -> tuple[str, float] | None:
    """(ISO 639-1 code, probability) when the text is long and clear enough, else None."""
    decided = _before_model(prose)
    if not isinstance(decided, str):
        return decided
    return _confident(*_identifier().classify(decided))


def detect_many(proses: list[str]) -> list[tuple[str, float] | None]:
    """detect() of each text, the model's part for all of them at once (same results, bit for bit)."""
    decided = [_before_model(prose) for prose in proses]
    to_classify = [i for i, result in enumerate(decided) if isinstance(result, str)]
    classified = _classify_many([decided[i] for i in to_classify])
    for i, (language, probability) in zip(to_classify, classified):
        decided[i] = _confident(language, probability)
    return decided


@cache
def _automaton() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """py3langid's byte automaton as numpy arrays: next state table, row offset per state, feature per state.
    The next state table (9.8 M entries) is a view of py3langid's own buffer, not a widened copy: 74 MB less
    in every extraction worker (issue 14's memory row)."""
    identifier = _identifier()
    return (np.frombuffer(identifier.tk_nextmove, dtype=np.uint32),
            np.asarray(identifier._rowbase, dtype=np.int64), np.asarray(identifier.tk_output, dtype=np.int64))


# Texts walked through the automaton together: bounds the (texts x bytes) state matrix.
WALK_CHUNK = 2048


def _feature_visits(encoded: list[bytes]) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """py3langid.langid.visit_counts of each byte string: (feature ids, counts) in order of first visit, or
    None when the walk meets no feature. The automaton steps all texts one byte position at a time."""
    next_state, row_offset, feature_of = _automaton()
    visits: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(encoded)
    by_length = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    for chunk_start in range(0, len(by_length), WALK_CHUNK):
        chunk = by_length[chunk_start:chunk_start + WALK_CHUNK]
        lengths = np.array([len(encoded[i]) for i in chunk], dtype=np.int64)
        width = int(lengths[0]) if len(chunk) else 0
        if width == 0:
            continue
        padded = np.zeros((len(chunk), width), dtype=np.uint8)
        for row, i in enumerate(chunk):
            padded[row, :lengths[row]] = np.frombuffer(encoded[i], dtype=np.uint8)
        features = np.full((len(chunk), width), -1, dtype=np.int32)
        # Longest first, so the texts still walking at a position are a prefix of the chunk.
        still_walking = np.searchsorted(-lengths, -np.arange(1, width + 1), side="right")
        state = np.zeros(len(chunk), dtype=np.int64)
        for position in range(width):
            active = int(still_walking[position])
            state[:active] = next_state[row_offset[state[:active]] + padded[:active, position]]
            features[:active, position] = feature_of[state[:active]]
        rows, positions = np.nonzero(features >= 0)
        found = features[rows, positions]
        # Per text, each feature once with its count, in the order the walk first met it (Counter's order:
        # the order py3langid sums in).
        order = np.lexsort((positions, found, rows))
        rows, positions, found = rows[order], positions[order], found[order]
        starts = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (found[1:] != found[:-1])])
        counts = np.diff(np.r_[starts, len(rows)])
        group_rows, group_first, group_features = rows[starts], positions[starts], found[starts]
        order = np.lexsort((group_first, group_rows))
        group_rows, group_features, counts = group_rows[order], group_features[order], counts[order]
        bounds = np.searchsorted(group_rows, np.arange(len(chunk) + 1))
        for row, i in enumerate(chunk):
            if bounds[row] < bounds[row + 1]:
                visits[i] = (group_features[bounds[row]:bounds[row + 1]], counts[bounds[row]:bounds[row + 1]])
    return visits


@cache
def _feature_table() -> np.ndarray:
    """py3langid's per-feature class scores as float32 (the model stores float16; numpy widens them on every
    product anyway, slowly: widening once makes each text's product ~5x faster with the same result)."""
    return _identifier().nb_ptc.astype(np.float32)


def _classify_many(texts: list[str]) -> list[tuple[str, float]]:
    """LanguageIdentifier.classify of each text (norm_probs, all languages), the automaton walked for all at
    once. The scoring is py3langid 0.4.0's _sparse_score, _decide and classify: each text's product is the
    same BLAS call on the same float32 numbers as there (BLAS sums in its own order, so it stays one call per
    text); the elementwise steps after it run for all texts at once, rows of one array, which gives the same
    floats (IEEE arithmetic, numpy's row-wise max, exp and pairwise sum)."""
    identifier = _identifier()
    if not texts:
        return []
    table, prior = _feature_table(), identifier.nb_pc
    encoded = [identifier._encode(text) for text in texts]
    scores = np.zeros((len(texts), len(identifier.nb_classes)), dtype=np.float32)  # featureless: 0.0
    for row, visits in enumerate(_feature_visits(encoded)):
        if visits is not None:
            features, counts = visits
            scores[row] = np.log1p(counts.astype(np.float32)) @ table[features] + prior
    # T = sqrt(bytes), as py3langid: a Python float, applied in float32.
    scores *= np.array([1.0 / math.sqrt(len(text) or 1) for text in encoded]).astype(np.float32)[:, None]
    np.exp(scores - scores.max(axis=1, keepdims=True), out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    for i, j in identifier._alias_pairs:
        scores[:, i] += scores[:, j]
        scores[:, j] = 0.0
    best = scores.argmax(axis=1)
    return [(identifier.nb_classes[b], float(scores[row, b])) for row, b in enumerate(best.tolist())]


class LanguageExtractor:
    name, version = NAME, VERSION
    content_only = True  # without a target, its findings read no ids and no time (observe.observations_of_page)

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        text = clean(event.text)
        if text.is_command:
            return []
        found = detect(text.prose)
        return [Finding("language", found[0], found[1])] if found else []

    def findings_of_many(self, events: list[EventView]) -> list[list[Finding]]:
        """self(event) of each event, the language model run over all of them at once."""
        readable, proses = [], []
        for i, event in enumerate(events):
            if is_authored_message(event) and not (text := clean(event.text)).is_command:
                readable.append(i)
                proses.append(text.prose)
        found = detect_many(proses)
        findings: list[list[Finding]] = [[] for _ in events]
        for i, result in zip(readable, found):
            if result:
                findings[i] = [Finding("language", result[0], result[1])]
        return findings
