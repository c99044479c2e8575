"""Research: which topic ranker beats "the user's most frequent tag so far" at topic top-1 (issue 12)?

Topic top-1 (warehouse/queries/predictive_topic_top1.sql): at a cutoff, for every user who holds a topic belief
then and has topic observations in the next horizon, is the user's top-ranked topic among the window's topics.
The baseline ranks by the undecayed count of the user's topic observations so far. Every ranker here ranks only
the user's own topics (a served belief exists only for a value the user was observed with), ties to the
smallest value, and is judged on the same users and cutoffs as the baseline.

Cutoff sets, in time order; each set's windows end by the next set's first cutoff (within a set, weekly cutoffs
with two-week windows overlap, so the bootstrap intervals printed are if anything too narrow):
  train       the calibration's training cutoffs (selfmodel.calibrate.plan_windows): free parameters are
              chosen here, by pooled top-1 over a small grid;
  validation  the calibration's validation cutoffs: the figure that decides whether a ranker is worth building;
  eval        the predictive suite's backtest cutoffs (what `make demo` prints; the issue's criterion).

Rankers:
  served          the product's top belief (beliefs_at_cutoff with the parameters in force: SQL, as the suite)
  model(h,k)      the served formula refitted for top-1: (S_v + k pi_v) / (S_v + k), S_v decayed sums with
                  half-life h, the in-force kind weights, repeat discount and base rates pi
  decayed(h)      S_v alone (k -> 0)
  recent(d)       count of the user's observations of v in the last d days (ties: the whole count)
  popular(w)      the site's popularity of v in the last w days (users who used v / users active), only v the
                  user used ("7-day site popularity")
  trending(h,k,w) the served formula with a time-varying base rate: pi_v(t) = popular(w) share at the as-of t
  sticky(h,k)     the served formula with pi_v = how often v held in the next window when the user had used v
                  before (counted on the training cutoffs), instead of how often it held across all users
  activity(n)     decay by the user's own activity: weight 2^(-(the user's later topic-bearing posts) / n), no
                  wall-clock decay
  cooccurrence(h,g) S_v(h) + g * sum over the user's other topics u of S_u(h) P(v | u), P from the site's posts
  mixed(h,k,w,a)  the served formula with pi_v = a * fitted base rate + (1 - a) * popular(w)
  blend(h,b)      log S_v(h) + b log popular(7): the trend as a multiplicative factor
  learned(r)      logistic regression (ridge r) of "v is in the window" on all the features above, fitted on the
                  training cutoffs' judged users (not expressible in the belief model: the ceiling of these
                  features, not a candidate)
  oracle          right whenever any of the user's topics is in the window: the ceiling of ranking own topics

Build (or reuse with --config) the demo warehouse: ingest the bundled sample, refresh, calibrate (as the
nightly does with calibration.nightly on), then evaluate. A ConvAI2 file (--convai2 PATH) is checked for
topic beliefs too.

    python benchmarks/topic_top1.py [--workdir /tmp/selfmodel-topic-top1] [--config EXISTING.yaml] [--convai2 PATH]

Found on the bundled sample (2026-12-07; judged pairs train 313, validation 172, eval 150): no ranker chosen on
the training cutoffs beats the baseline by 0.10 on validation (best: the served formula with half-life 30 d and
prior 0.1, +0.070 [+0.012, +0.128]; served today +0.035); none does even with hindsight (best on validation
+0.082). The eval cutoffs' best figures (7-day popularity 0.580, a trending base rate 0.593) are hindsight and do
not carry over to validation (0.570 and 0.610 against its baseline 0.581).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from selfmodel.beliefs import parameters as beliefs_parameters  # noqa: E402
from selfmodel.calibrate import TRAIN, VALIDATION, evaluation_cutoffs, plan_windows  # noqa: E402
from selfmodel.evals.predictive import create_beliefs_at_cutoff  # noqa: E402
from selfmodel.settings import Settings, load_settings  # noqa: E402
from warehouse.db import connect, execute, run, run_dicts  # noqa: E402

EVAL = "eval"
SPLITS = (TRAIN, VALIDATION, EVAL)

TOPIC_OBSERVATIONS = """
select user_id, value, weight, epoch_us(observed_at) / 86400e6 as day, source,
       coalesce(evidence_kind, extractor || ':') as kind, event_id,
       row_number() over (
           partition by user_id, key, value, coalesce(evidence_unit, 'event|' || event_id)
           order by observed_at, event_id, weight) - 1 as unit_rank
from observations
where split_part(key, '@', 1) = 'topic'
"""


@dataclass(frozen=True)
class Cutoff:
    split: str
    at: datetime
    horizon_end: datetime


def build_warehouse(workdir: Path, data: Path, name: str, fmt: str) -> Path:
    """Ingest `data`, refresh, calibrate and refresh again (the nightly's order with calibration on)."""
    from selfmodel.beliefs.refresh import refresh_beliefs
    from selfmodel.calibrate import calibrate
    from selfmodel.ingest import ingest

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    config = workdir / "selfmodel.yaml"
    config.write_text(f"warehouse: {{path: warehouse.duckdb, analyst_copy: null}}\n"
                      f"sources:\n  - {{name: {name}, format: {fmt}, path: {data}}}\n"
                      f"calibration: {{nightly: true}}\n")
    settings = load_settings(config, environ={})
    started = time.perf_counter()
    ingest(settings)
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings)
        report = calibrate(con, settings)
        refresh_beliefs(con, settings)
    finally:
        con.close()
    adopted = [f.family for f in report.families if f.status == "adopted"]
    print(f"built {settings.warehouse_path} in {time.perf_counter() - started:.0f} s; calibration adopted {adopted}")
    return config


def plan_cutoffs(con, settings: Settings) -> list[Cutoff]:
    source = settings.eval.predictive.source
    horizon = timedelta(days=settings.eval.predictive.horizon_days)
    [(data_end,)] = run(con, "data_end", {"source": source, "as_of": None})
    [(data_start,)] = run(con, "data_start", {"source": source})
    plan = plan_windows(data_end, data_start, settings)
    cutoffs = [Cutoff(w.split, w.cutoff, w.horizon_end) for w in plan.windows]
    cutoffs += [Cutoff(EVAL, c, c + horizon) for c in sorted(evaluation_cutoffs(data_end, settings))]
    return cutoffs


def served_top1(con, settings: Settings, cutoff: Cutoff) -> pd.DataFrame:
    """The suite's own query: per judged user, the served top belief and the baseline's topic, and hits."""
    create_beliefs_at_cutoff(con, settings, cutoff.at)
    try:
        rows = run_dicts(con, "predictive_topic_top1", {"cutoff": cutoff.at, "horizon_end": cutoff.horizon_end,
                                                        "source": settings.eval.predictive.source})
    finally:
        execute(con, "drop table if exists beliefs_at_cutoff")
    return pd.DataFrame(rows, columns=["user_id", "believed_topic", "frequent_topic", "believed_hit", "frequent_hit"])


class Ranker:
    """Scores every (user, value) pair the user was observed with, at one cutoff, from the observations up
    to it (numpy: the pairs sorted by user, then value, so ties go to the smallest value as in the SQL)."""

    def __init__(self, observations: pd.DataFrame, policy, cutoff_day: float) -> None:
        history = observations[observations.day <= cutoff_day]
        self.policy = policy
        self.cutoff_day = cutoff_day
        kind_weight = history.kind.map(lambda k: policy.kind_weight(k)).to_numpy(float)
        self.effective = (history.weight.to_numpy(float) * kind_weight
                          * policy.repeat_discount ** history.unit_rank.to_numpy(float))
        self.age = cutoff_day - history.day.to_numpy(float)
        pair_names = history.user_id.to_numpy(str).astype(object) + "\x1f" + history.value.to_numpy(str).astype(object)
        names, self.pair = np.unique(pair_names.astype(str), return_inverse=True)
        split = [n.split("\x1f", 1) for n in names]
        self.user = np.array([u for u, _ in split], dtype=object)
        self.value = np.array([v for _, v in split], dtype=object)
        self.obs_user = history.user_id.to_numpy(str)
        self.obs_value = history.value.to_numpy(str)
        self.obs_event = history.event_id.to_numpy(str)
        self.obs_day = history.day.to_numpy(float)
        self._popular: dict[tuple, np.ndarray] = {}
        self._post_rank: np.ndarray | None = None

    def _sum(self, per_observation: np.ndarray) -> np.ndarray:
        return np.bincount(self.pair, weights=per_observation, minlength=self.user.size)

    def count(self) -> np.ndarray:
        return self._sum(np.ones(self.pair.size))

    def decayed(self, half_life: float) -> np.ndarray:
        return self._sum(self.effective * np.exp2(-self.age / half_life))

    def recent(self, days: float) -> np.ndarray:
        return self._sum((self.age < days).astype(float)) + self.count() * 1e-6  # ties: the whole count

    def popularity(self, days: float, per: str = "user") -> np.ndarray:
        """Share of the users (or posts) active in the last `days` who used (had) the value then."""
        if (days, per) not in self._popular:
            recent = self.age < days
            unit = self.obs_user if per == "user" else self.obs_event
            frame = pd.DataFrame({"unit": unit[recent], "value": self.obs_value[recent]}).drop_duplicates()
            active = frame.unit.nunique()
            shares = frame.groupby("value").size() / (active + 1)
            self._popular[(days, per)] = pd.Series(self.value).map(shares).fillna(0.0).to_numpy(float)
        return self._popular[(days, per)]

    def cooccurrence(self, half_life: float, strength: float) -> np.ndarray:
        """S_v + strength * sum over the user's other values u of S_u * P(v | u), P from the site's posts up to
        the cutoff (how often a post with u also has v): a user's neighbouring interests lend v weight."""
        if not hasattr(self, "_conditional"):
            posts = pd.DataFrame({"event": self.obs_event, "value": self.obs_value}).drop_duplicates()
            joined = posts.merge(posts, on="event", suffixes=("_u", "_v"))
            joined = joined[joined.value_u != joined.value_v]
            together = joined.groupby(["value_u", "value_v"]).size()
            alone = posts.groupby("value").size()
            self._conditional = (together / alone.reindex(together.index.get_level_values(0)).to_numpy()).to_dict()
        evidence = self.decayed(half_life)
        lent = np.zeros_like(evidence)
        by_user: dict[str, list[int]] = {}
        for i, u in enumerate(self.user):
            by_user.setdefault(u, []).append(i)
        for members in by_user.values():
            for i in members:
                lent[i] = sum(evidence[j] * self._conditional.get((self.value[j], self.value[i]), 0.0)
                              for j in members if j != i)
        return evidence + strength * lent

    def base_rate(self, rates) -> np.ndarray:
        return np.array([rates.get(v, 0.0) for v in self.value], dtype=float)

    def activity(self, posts: float) -> np.ndarray:
        """Decay by the user's own later topic-bearing posts: weight 2^(-(posts after it) / n)."""
        if self._post_rank is None:
            events = pd.DataFrame({"user": self.obs_user, "event": self.obs_event, "day": self.obs_day})
            firsts = events.drop_duplicates(["user", "event"]).sort_values(["user", "day", "event"],
                                                                            ascending=[True, False, False])
            firsts["later"] = firsts.groupby("user").cumcount()
            self._post_rank = events.merge(firsts[["user", "event", "later"]], on=["user", "event"],
                                           how="left").later.to_numpy(float)
        return self._sum(self.effective * np.exp2(-self._post_rank / posts))


def model_score(evidence: np.ndarray, base_rate: np.ndarray, prior: float) -> np.ndarray:
    return (evidence + prior * base_rate) / (evidence + prior)


def top1_hits(ranker: Ranker, score: np.ndarray, judged: set[str], window: set[tuple[str, str]]) -> set[str]:
    """The judged users whose top-scored value is in the window (ties: the smallest value, as the SQL)."""
    score = np.round(score, 12)
    # pairs are sorted by user then value: the first maximum per user is its smallest top value
    order = np.lexsort((np.arange(score.size), -score, ranker.user.astype(str)))
    users = ranker.user[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    return {ranker.user[i] for i in order[first] if ranker.user[i] in judged and (ranker.user[i], ranker.value[i]) in window}


def candidate_grid() -> dict[str, list[tuple]]:
    half_lives = [1, 2, 3, 5, 7, 10, 14, 21, 30, 60, 120, 365]
    priors = [0.1, 0.3, 1, 2, 4, 8, 16, 64, 256, 1024]
    windows = [3, 7, 14, 30, 60]
    return {
        "model": list(itertools.product(half_lives, priors)),
        "decayed": [(h,) for h in half_lives],
        "recent": [(d,) for d in [3, 7, 14, 30, 60, 120]],
        "popular": [(w,) for w in windows],
        "popular_posts": [(w,) for w in windows],
        "trending": list(itertools.product([3, 7, 14, 30, 60], [0.3, 1, 2, 4, 8, 16, 64], windows)),
        "trending_posts": list(itertools.product([3, 7, 14, 30, 60], [0.3, 1, 2, 4, 8, 16, 64], windows)),
        "sticky": list(itertools.product(half_lives, priors)),
        "activity": [(n,) for n in [1, 2, 3, 5, 10, 20, 50]],
        "cooccurrence": list(itertools.product([3, 7, 14, 30, 60], [0.25, 0.5, 1, 2, 4])),
        "mixed": list(itertools.product([7, 14, 30, 60], [0.3, 1, 4, 16, 64], [7, 30], [0.25, 0.5, 0.75])),
        "blend": list(itertools.product([3, 7, 14, 30, 60, 365], [0.25, 0.5, 1, 2, 4])),
        "learned": [(0.0,), (0.001,), (0.01,), (0.1,)],
    }


def score(ranker: Ranker, name: str, params: tuple, sticky: dict[str, float]) -> np.ndarray:
    if name == "model":
        h, k = params
        return model_score(ranker.decayed(h), ranker.base_rate(ranker.policy.base_rates), k)
    if name == "decayed":
        return ranker.decayed(*params)
    if name == "recent":
        return ranker.recent(*params)
    if name in ("popular", "popular_posts"):
        return ranker.popularity(params[0], "user" if name == "popular" else "post") + 1e-9 * ranker.count()
    if name in ("trending", "trending_posts"):
        h, k, w = params
        return model_score(ranker.decayed(h), ranker.popularity(w, "user" if name == "trending" else "post"), k)
    if name == "sticky":
        h, k = params
        return model_score(ranker.decayed(h), ranker.base_rate(sticky), k)
    if name == "activity":
        return ranker.activity(*params)
    if name == "cooccurrence":
        return ranker.cooccurrence(*params)
    if name == "mixed":  # a base rate half static (fitted), half trending
        h, k, w, share = params
        rate = share * ranker.base_rate(ranker.policy.base_rates) + (1 - share) * ranker.popularity(w)
        return model_score(ranker.decayed(h), rate, k)
    if name == "blend":
        h, b = params
        return np.log(ranker.decayed(h) + 1e-12) + b * np.log(ranker.popularity(7) + 1e-3)
    raise ValueError(name)


FEATURE_NAMES = ["log count", "share of user's count", "log days since last use", "log S(3 d)", "log S(7 d)",
                 "log S(30 d)", "log S(120 d)", "log popular(7 d)", "log popular(30 d)", "log fitted base rate",
                 "log sticky rate", "log co-occurrence"]


def features(ranker: Ranker, sticky: dict[str, float]) -> np.ndarray:
    """Per (user, value): what a learned ranker may combine (all known at the cutoff)."""
    count = ranker.count()
    user_total = pd.Series(count).groupby(ranker.user).transform("sum").to_numpy()
    last_use = pd.Series(ranker.age).groupby(ranker.pair).min().reindex(range(count.size)).to_numpy()
    columns = [np.log1p(count), count / user_total, np.log1p(last_use)]
    columns += [np.log(ranker.decayed(h) + 1e-6) for h in (3, 7, 30, 120)]
    columns += [np.log(ranker.popularity(w) + 1e-3) for w in (7, 30)]
    columns += [np.log(ranker.base_rate(ranker.policy.base_rates) + 1e-3), np.log(ranker.base_rate(sticky) + 1e-3),
                np.log1p(ranker.cooccurrence(30, 1.0) - ranker.decayed(30))]
    return np.column_stack(columns)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    from scipy.optimize import minimize

    design = np.column_stack([x, np.ones(len(x))])

    def loss(theta):
        z = design @ theta
        value = np.mean(np.logaddexp(0, z) - y * z) + ridge * np.sum(theta[:-1] ** 2)
        gradient = design.T @ (1 / (1 + np.exp(-z)) - y) / len(y)
        gradient[:-1] += 2 * ridge * theta[:-1]
        return value, gradient

    return minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B").x


def evaluate(config: Path) -> None:
    settings = load_settings(config, environ={})
    con = connect(settings.warehouse_path)
    try:
        policy = beliefs_parameters.in_force(con, settings).policies["topic"]
        print(f"topic policy in force: half-life {policy.half_life_days:.2f} d, prior {policy.prior:.3f}, "
              f"repeat discount {policy.repeat_discount:.3f}, {len(policy.base_rates)} base rates, "
              f"map {policy.calibration}")
        cutoffs = plan_cutoffs(con, settings)
        observations = con.sql(TOPIC_OBSERVATIONS).df()
        source = settings.eval.predictive.source
        served = {c: served_top1(con, settings, c) for c in cutoffs}
    finally:
        con.close()
    if observations.empty:
        print("no topic observations: nothing to rank")
        return
    prepared = []
    held: dict[str, int] = {}
    candidates: dict[str, int] = {}
    for cutoff in cutoffs:
        start_day = cutoff.at.timestamp() / 86_400
        end_day = cutoff.horizon_end.timestamp() / 86_400
        in_window = observations[(observations.day > start_day) & (observations.day <= end_day)
                                 & ((observations.source == source) if source else True)]
        window = set(zip(in_window.user_id, in_window.value))
        ranker = Ranker(observations, policy, start_day)
        judged = set(ranker.user) & set(in_window.user_id)
        assert set(served[cutoff].user_id) == judged, f"{cutoff}: the judged users differ from the suite's"
        prepared.append((cutoff, ranker, judged, window))
        if cutoff.split == TRAIN:  # how often a value the user was observed with held in the next window
            for u, v in zip(ranker.user, ranker.value):
                if u in judged:
                    candidates[v] = candidates.get(v, 0) + 1
                    held[v] = held.get(v, 0) + ((u, v) in window)
    sticky = {v: min(held.get(v, 0) / (n + 1), 0.95) for v, n in candidates.items()}
    grid = candidate_grid()
    # a learned ranker: logistic regression of "the value is in the window" on the features, judged users'
    # values of the training cutoffs only; its ridge is its free parameter
    matrices = {id(r): features(r, sticky) for _, r, _, _ in prepared}
    train_rows = [(matrices[id(r)][i], (r.user[i], r.value[i]) in window)
                  for c, r, judged, window in prepared if c.split == TRAIN for i in range(r.user.size) if r.user[i] in judged]
    if not train_rows:
        print("no judged users at the training cutoffs: only the rankers without free parameters are judged")
        grid = {}
    x_train = np.array([row for row, _ in train_rows]) if train_rows else np.zeros((1, len(FEATURE_NAMES)))
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-9
    y_train = np.array([float(label) for _, label in train_rows])
    learned = ({ridge: fit_logistic((x_train - mean) / scale, y_train, ridge) for ridge in (0.0, 0.001, 0.01, 0.1)}
               if train_rows else {})
    if train_rows:
        print("learned ranker's standardised weights (ridge 0.01): " + ", ".join(
        f"{name} {w:+.2f}" for name, w in zip(FEATURE_NAMES, learned[0.01][:-1])))
    # hits[split][(name, params)] = the (cutoff, user) pairs it got right; judged[split] = every pair judged
    hits: dict[str, dict[tuple, set]] = {s: {} for s in SPLITS}
    pairs: dict[str, list] = {s: [] for s in SPLITS}
    for cutoff, ranker, judged, window in prepared:
        official = served[cutoff]
        pairs[cutoff.split] += [(cutoff.at, u) for u in sorted(judged)]
        tally = hits[cutoff.split]

        def add(key, users):
            tally.setdefault(key, set()).update((cutoff.at, u) for u in users)

        add(("served", ()), set(official.user_id[official.believed_hit.astype(bool)]))
        add(("baseline", ()), set(official.user_id[official.frequent_hit.astype(bool)]))
        mine = top1_hits(ranker, ranker.count(), judged, window)
        assert mine == set(official.user_id[official.frequent_hit.astype(bool)]), "the baseline differs from the suite's"
        add(("oracle", ()), {u for u, v in zip(ranker.user, ranker.value) if (u, v) in window and u in judged})
        add(("in force", ()), top1_hits(ranker, model_score(
            ranker.decayed(policy.half_life_days), ranker.base_rate(policy.base_rates), policy.prior), judged, window))
        for name, options in grid.items():
            if name == "learned":
                for (ridge,) in options:
                    theta = learned[ridge]
                    z = (matrices[id(ranker)] - mean) / scale @ theta[:-1]
                    add((name, (ridge,)), top1_hits(ranker, z, judged, window))
                continue
            for params in options:
                add((name, params), top1_hits(ranker, score(ranker, name, params, sticky), judged, window))
    report(hits, pairs, grid)


def gain_interval(hits: set, baseline: set, judged: list, resamples: int = 2000, seed: int = 12) -> tuple[float, float]:
    """95 % paired bootstrap interval of (top-1 - baseline top-1) over the judged (cutoff, user) pairs."""
    difference = np.array([(p in hits) - (p in baseline) for p in judged], dtype=float)
    if difference.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, difference.size, (resamples, difference.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def report(hits: dict, pairs: dict, grid: dict) -> None:
    def share(split, key):
        return len(hits[split].get(key, ())) / len(pairs[split]) if pairs[split] else float("nan")

    for split in SPLITS:
        dates = sorted({at for at, _ in pairs[split]})
        print(f"{split} cutoffs with judged users: {len(dates)}"
              + (f", {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d}" if dates else ""))

    print(f"\njudged (cutoff, user) pairs: train {len(pairs[TRAIN])}, validation {len(pairs[VALIDATION])}, "
          f"eval {len(pairs[EVAL])}; parameters chosen by train top-1; [95 % paired bootstrap interval of the gain]")
    header = (f"{'ranker':<32} {'train':>6} {'valid':>6} {'base':>6} {'gain':>7} {'interval':>16}   "
              f"{'eval':>6} {'base':>6} {'gain':>7} {'interval':>16}")
    print(header)
    print("-" * len(header))
    rows = [("served", ()), ("in force", ()), ("baseline", ())]
    for name, options in grid.items():  # each family's parameters chosen on the training cutoffs
        best = max(options, key=lambda p: (share(TRAIN, (name, p)), -options.index(p)))
        rows.append((name, best))
    rows.append(("oracle", ()))
    base = ("baseline", ())
    for name, params in rows:
        label = f"{name}{params}" if params else name
        key = (name, params)
        line = f"{label:<32} {share(TRAIN, key):6.3f}"
        for split in (VALIDATION, EVAL):
            low, high = gain_interval(hits[split].get(key, set()), hits[split].get(base, set()), pairs[split])
            line += (f" {share(split, key):6.3f} {share(split, base):6.3f} {share(split, key) - share(split, base):+7.3f}"
                     f" [{low:+.3f}, {high:+.3f}]  ")
        print(line)
    print("\nbest of each family with hindsight (NOT a fair figure: chosen on the cutoffs it is judged on), "
          "and the same parameters on the other cutoffs")
    for name, options in grid.items():
        figures = []
        for split, other in ((VALIDATION, EVAL), (EVAL, VALIDATION)):
            best = max(options, key=lambda p: (share(split, (name, p)), -options.index(p)))
            figures.append(f"{split} {share(split, (name, best)):.3f} at {best} ({other} {share(other, (name, best)):.3f})")
        print(f"  {name:<16} " + "; ".join(figures))


def convai2_check(path: Path, workdir: Path) -> None:
    config = build_warehouse(workdir, path, "convai2", "convai2")
    settings = load_settings(config, environ={})
    con = connect(settings.warehouse_path)
    try:
        [(topics, users)] = con.sql(
            "select count(*), count(distinct user_id) from observations where split_part(key, '@', 1) = 'topic'"
        ).fetchall()
        [(beliefs,)] = con.sql("select count(*) from beliefs where split_part(key, '@', 1) = 'topic'").fetchall()
    finally:
        con.close()
    print(f"ConvAI2: {topics} topic observations of {users} users, {beliefs} topic beliefs in force")
    if topics:
        evaluate(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/selfmodel-topic-top1"))
    parser.add_argument("--config", type=Path, default=None,
                        help="an existing warehouse's config (skips the build; the warehouse is only read)")
    parser.add_argument("--convai2", type=Path, default=None, help="ConvAI2 data_volunteers.json: check it too")
    args = parser.parse_args()
    config = args.config or build_warehouse(args.workdir / "qc", REPO / "data" / "stackexchange-quantumcomputing",
                                            "qc", "stackexchange")
    evaluate(config)
    if args.convai2:
        convai2_check(args.convai2, args.workdir / "convai2")


if __name__ == "__main__":
    main()
