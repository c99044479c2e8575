"""The budget: cost at the configured prices, a cap that refuses the request that would pass it."""

import threading

import pytest

from selfmodel.llm.base import Usage
from selfmodel.llm.budget import Budget, Prices, estimate_usage

PRICES = Prices(per_1m_input_tokens=0.15, per_1m_output_tokens=0.60)


def test_cost_is_tokens_times_the_configured_prices() -> None:
    assert PRICES.cost(Usage(1_000_000, 0)) == pytest.approx(0.15)
    assert PRICES.cost(Usage(200, 50)) == pytest.approx((200 * 0.15 + 50 * 0.60) / 1e6)


def test_the_cap_refuses_the_request_that_would_pass_it_and_counts_what_was_spent() -> None:
    budget = Budget(cap_usd=1.0, prices=Prices(1.0, 1.0))  # $1 per million tokens either way
    estimate = Usage(300_000, 100_000)  # $0.40
    assert budget.reserve(estimate) and budget.reserve(estimate)
    assert not budget.reserve(estimate) and budget.stopped  # 1.20 > 1.00
    budget.settle(estimate, Usage(100_000, 0))  # the reply used less than estimated
    assert budget.spent_usd == pytest.approx(0.10)
    assert budget.remaining_usd == pytest.approx(0.50)
    assert budget.reserve(Usage(400_000, 0))  # room again
    budget.release(Usage(400_000, 0))
    budget.release(estimate)
    assert budget.spent == Usage(100_000, 0) and budget.remaining_usd == pytest.approx(0.90)


def test_no_cap_never_stops() -> None:
    budget = Budget(cap_usd=None, prices=PRICES)
    assert budget.reserve(Usage(10**12, 10**12)) and not budget.stopped and budget.remaining_usd is None


def test_reservations_from_many_threads_never_pass_the_cap() -> None:
    budget = Budget(cap_usd=1.0, prices=Prices(1.0, 0.0))
    granted = []

    def worker() -> None:
        for _ in range(100):
            granted.append(budget.reserve(Usage(10_000, 0)))  # $0.01 each: 100 fit

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 100


def test_an_estimate_counts_the_messages_and_the_longest_reply() -> None:
    estimate = estimate_usage([{"role": "system", "content": "x" * 400}, {"role": "user", "content": "y" * 40}], 600)
    assert estimate == Usage(100 + 10 + 2 * 4, 600)


def test_a_later_step_of_a_run_gets_what_the_earlier_steps_left_of_the_cap() -> None:
    from types import SimpleNamespace

    llm = SimpleNamespace(max_cost_usd_per_run=1.0, price_per_1m_input_tokens=1.0, price_per_1m_output_tokens=1.0)
    assert Budget.from_settings(llm).cap_usd == 1.0
    assert Budget.from_settings(llm, already_spent_usd=0.3).cap_usd == pytest.approx(0.7)
    spent_out = Budget.from_settings(llm, already_spent_usd=1.2)  # an overrun by estimate: nothing left, not -0.2
    assert spent_out.cap_usd == 0.0 and not spent_out.reserve(Usage(1, 0)) and spent_out.stopped
