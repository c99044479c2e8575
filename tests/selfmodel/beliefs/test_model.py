"""The belief model's required properties, on the pure functions (property-based where it helps)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfmodel.beliefs.model import KeyPolicy, Observation, confidences, decayed_evidence, move_evidence

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ONE = KeyPolicy("one", half_life_days=30, prior=2.0)
MANY = KeyPolicy("many", half_life_days=30, prior=2.0)

observations = st.lists(
    st.builds(
        Observation,
        value=st.sampled_from(["a", "b", "c"]),
        weight=st.floats(min_value=0.01, max_value=5, allow_nan=False),
        observed_at=st.integers(min_value=0, max_value=400 * 86400).map(lambda s: T0 + timedelta(seconds=s)),
    ),
    max_size=40,
)


def confidence(obs, at, policy, value):
    return confidences(decayed_evidence(obs, at, policy.half_life_days), policy).get(value, 0.0)


@given(observations, st.sampled_from([ONE, MANY]))
def test_confidence_lies_in_zero_one(obs, policy) -> None:
    at = T0 + timedelta(days=400)
    for value in confidences(decayed_evidence(obs, at, policy.half_life_days), policy).values():
        assert 0.0 <= value < 1.0


@pytest.mark.parametrize("policy", [ONE, MANY])
def test_one_observation_never_gives_certainty_and_none_gives_zero(policy) -> None:
    single = [Observation("nurse", 1.0, T0)]
    assert confidence(single, T0, policy, "nurse") == pytest.approx(1 / 3)
    assert confidence([], T0, policy, "nurse") == 0.0
    assert confidence([Observation("nurse", 1000.0, T0)], T0, policy, "nurse") < 1.0


@given(observations, st.sampled_from(["a", "b"]), st.sampled_from([ONE, MANY]))
def test_consistent_evidence_raises_confidence(obs, value, policy) -> None:
    at = T0 + timedelta(days=400)
    before = confidence(obs, at, policy, value)
    after = confidence([*obs, Observation(value, 1.0, at)], at, policy, value)
    assert after > before


def test_without_new_evidence_evidence_halves_each_half_life() -> None:
    obs = [Observation("x", 3.0, T0), Observation("x", 1.0, T0 + timedelta(days=10))]
    at = T0 + timedelta(days=20)
    now = decayed_evidence(obs, at, 30)["x"]
    later = decayed_evidence(obs, at + timedelta(days=30), 30)["x"]
    assert later == pytest.approx(now / 2, rel=1e-12)
    assert confidence(obs, at + timedelta(days=30), MANY, "x") < confidence(obs, at, MANY, "x")
    assert confidence(obs, at + timedelta(days=30), ONE, "x") < confidence(obs, at, ONE, "x")


def test_contradicting_evidence_lowers_the_old_value_without_removing_it() -> None:
    obs = [Observation("teacher", 1.0, T0 + timedelta(days=d)) for d in range(5)]
    at = T0 + timedelta(days=5)
    before = confidences(decayed_evidence(obs, at, 30), ONE)
    after = confidences(decayed_evidence([*obs, Observation("nurse", 2.0, at)], at, 30), ONE)
    assert after["teacher"] < before["teacher"]
    assert set(after) == {"teacher", "nurse"}


@settings(max_examples=300)
@given(observations, st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=5), st.randoms())
def test_incremental_folding_equals_a_full_recompute(obs, cut_days, rng) -> None:
    """Fold observations in arbitrary order and lateness at increasing as-of times: same sums as recompute."""
    shuffled = list(obs)
    rng.shuffle(shuffled)
    as_ofs = sorted(T0 + timedelta(days=d) for d in cut_days) + [T0 + timedelta(days=401)]
    chunks = [shuffled[i::len(as_ofs)] for i in range(len(as_ofs))]  # arrival order != time order
    state: dict[str, float] = {}
    state_at = T0
    pending: list[Observation] = []
    for as_of, arriving in zip(as_ofs, chunks):
        pending += arriving
        due = [o for o in pending if o.observed_at <= as_of]
        pending = [o for o in pending if o.observed_at > as_of]
        state = move_evidence(state, state_at, as_of, 30, due)
        state_at = as_of
    full = decayed_evidence(obs, state_at, 30)
    assert set(state) == set(full)
    for value, expected in full.items():
        assert state[value] == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_evidence_cannot_move_back_in_time() -> None:
    with pytest.raises(ValueError, match="forward"):
        move_evidence({"x": 1.0}, T0, T0 - timedelta(days=1), 30)
