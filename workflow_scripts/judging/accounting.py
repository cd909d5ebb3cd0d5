"""Token and cost accounting, and the per-run budget cap.

Before a request is sent, an upper bound of its cost is reserved: byte-level BPE
tokenizers never make more tokens than the prompt has UTF-8 bytes, plus the chat
template's few tokens, plus `max_tokens` out. A request whose reservation would
take spent + reserved past the budget is not sent, so a run stops cleanly below
its budget. When the answer comes, the reservation is replaced by the cost of the
tokens the endpoint reports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

CHAT_OVERHEAD_TOKENS = 32  # role markers and template tokens around one user message


@dataclass(frozen=True)
class Prices:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


def max_prompt_tokens(prompt: str) -> int:
    return len(prompt.encode("utf-8")) + CHAT_OVERHEAD_TOKENS


def estimated_prompt_tokens(prompt: str) -> int:
    """A typical count for English text (~4 characters a token), for estimates only."""
    return len(prompt) // 4 + CHAT_OVERHEAD_TOKENS // 2


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Ledger:
    prices: Prices
    budget_usd: float | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    responses: int = 0  # billed responses (every HTTP 200, retried ones included)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_missing: int = 0
    refused_by_budget: int = 0
    attempts: Counter = field(default_factory=Counter)  # outcome of every HTTP attempt

    def reserve(self, prompt: str, max_tokens: int) -> float | None:
        """Reserve the most this request can cost; None when the budget would be passed."""
        bound = self.prices.cost(max_prompt_tokens(prompt), max_tokens)
        if self.budget_usd is not None and self.spent_usd + self.reserved_usd + bound > self.budget_usd:
            self.refused_by_budget += 1
            return None
        self.reserved_usd += bound
        return bound

    def release(self, reservation: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reservation)

    def bill(self, usage: dict | None) -> float:
        """Account one response's reported usage; returns its cost."""
        self.responses += 1
        if not usage:
            self.usage_missing += 1
            return 0.0
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        cost = self.prices.cost(prompt, completion)
        self.spent_usd += cost
        return cost

    def summary(self) -> dict:
        return {
            "responses": self.responses,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "usage_missing": self.usage_missing,
            "cost_usd": round(self.spent_usd, 6),
            "budget_usd": self.budget_usd,
            "refused_by_budget": self.refused_by_budget,
            "attempts": dict(sorted(self.attempts.items())),
            "prices_per_mtok": {
                "input": self.prices.input_per_mtok,
                "output": self.prices.output_per_mtok,
            },
        }
