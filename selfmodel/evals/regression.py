"""When does a drop count? Only when it exceeds the tolerance AND is statistically significant."""

from __future__ import annotations

from selfmodel.evals.metrics import mcnemar_p_value, paired_bootstrap_difference


def case_regression(before: dict[str, bool], after: dict[str, bool], tolerance: float, alpha: float) -> dict | None:
    """Paired labeled cases: the pass rate fell by more than `tolerance` and McNemar's p < alpha."""
    cases = sorted(before.keys() & after.keys())
    if not cases:
        return None
    old = sum(before[c] for c in cases) / len(cases)
    new = sum(after[c] for c in cases) / len(cases)
    if old - new <= tolerance:
        return None
    p_value = mcnemar_p_value([before[c] for c in cases], [after[c] for c in cases])
    if p_value >= alpha:
        return None
    return {"before": old, "after": new, "test": "mcnemar", "p_value": p_value, "paired_cases": len(cases),
            "worst_cases": [c for c in cases if before[c] and not after[c]][:10]}


def ratio_regression(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], tolerance: float,
                     alpha: float, resamples: int = 2000, seed: int = 0) -> dict | None:
    """A ratio over users (held / served): it fell by more than `tolerance` and the paired bootstrap
    interval of the difference lies wholly below zero."""
    interval = paired_bootstrap_difference(before, after, resamples, seed=seed, level=1 - alpha)
    if interval is None:
        return None
    difference, low, high = interval
    if -difference <= tolerance or high >= 0:
        return None
    rate = lambda pair: pair[0] / pair[1] if pair[1] else 0.0  # noqa: E731
    worst = sorted(after, key=lambda u: rate(after[u]) - rate(before.get(u, (0, 0))))[:10]
    return {"difference": difference, "interval": [low, high], "test": "paired_bootstrap", "worst_cases": worst}
