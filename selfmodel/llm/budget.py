"""What a run may spend on a language model, at the prices in the config (never fetched), and what it spent.

Before a request the caller reserves its estimated cost (`reserve`); a request that would take the run past
the cap is not made, and the budget says it stopped. After the reply the reservation is replaced by what the
endpoint reports (`settle`). Safe to use from several threads at once.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from selfmodel.llm.base import Message, Usage

# A rough token count for estimates (about four characters per token in English), and the per-message
# overhead of the chat format.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_usage(messages: list[Message], max_output_tokens: int, schema_chars: int = 0) -> Usage:
    """An upper-leaning estimate of a request: its messages (and the JSON schema sent with it) in, at most
    `max_output_tokens` out."""
    tokens = sum(estimate_tokens(str(m.get("content") or "")) + TOKENS_PER_MESSAGE for m in messages)
    return Usage(tokens + estimate_tokens("x" * schema_chars), max_output_tokens)


@dataclass(frozen=True)
class Prices:
    """USD per million tokens, as configured."""

    per_1m_input_tokens: float
    per_1m_output_tokens: float

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.per_1m_input_tokens + usage.output_tokens * self.per_1m_output_tokens) / 1e6


class Budget:
    """A run's spending cap (None: no cap) and its running account of tokens and cost."""

    def __init__(self, cap_usd: float | None, prices: Prices) -> None:
        self.cap_usd = cap_usd
        self.prices = prices
        self._lock = threading.Lock()
        self._spent = Usage()
        self._spent_usd = 0.0
        self._reserved_usd = 0.0
        self.stopped = False  # a request was refused because it would have passed the cap

    @classmethod
    def from_settings(cls, llm, already_spent_usd: float = 0.0) -> "Budget":
        """The budget of one run under `llm` (selfmodel.settings.LLMSettings). A step of a run whose earlier
        steps already spent `already_spent_usd` (the nightly's evaluate after its refresh, which ran in another
        task) gets what is left of the run's cap."""
        cap = llm.max_cost_usd_per_run
        if cap is not None:
            cap = max(0.0, cap - already_spent_usd)
        return cls(cap, Prices(llm.price_per_1m_input_tokens, llm.price_per_1m_output_tokens))

    def cost(self, usage: Usage) -> float:
        return self.prices.cost(usage)

    def reserve(self, estimate: Usage) -> bool:
        """Hold the estimated cost of a request; False (and `stopped`) when it would pass the cap."""
        cost = self.cost(estimate)
        with self._lock:
            # (a millionth of a cent of slack: a hundred $0.01 requests fit in $1.00 despite float rounding)
            if self.cap_usd is not None and self._spent_usd + self._reserved_usd + cost > self.cap_usd + 1e-8:
                self.stopped = True
                return False
            self._reserved_usd += cost
            return True

    def settle(self, estimate: Usage, actual: Usage) -> None:
        """Replace a reservation by what the request really used (also for a failed request: what it cost)."""
        with self._lock:
            self._reserved_usd = max(0.0, self._reserved_usd - self.cost(estimate))
            self._charge(actual)

    def release(self, estimate: Usage) -> None:
        """Drop a reservation whose request was never answered (nothing was charged)."""
        self.settle(estimate, Usage())

    def charge(self, actual: Usage) -> None:
        """Count what a request used that had no reservation (a batch's replies)."""
        with self._lock:
            self._charge(actual)

    def _charge(self, actual: Usage) -> None:
        self._spent = self._spent + actual
        self._spent_usd += self.cost(actual)

    @property
    def spent(self) -> Usage:
        return self._spent

    @property
    def spent_usd(self) -> float:
        return self._spent_usd

    @property
    def remaining_usd(self) -> float | None:
        if self.cap_usd is None:
            return None
        with self._lock:
            return max(0.0, self.cap_usd - self._spent_usd - self._reserved_usd)
