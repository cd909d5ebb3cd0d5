"""Trait-expression score: a judge rates, 0-100, how strongly an answer expresses a
persona's traits. Logprob method (DESIGN.md section 5): the score is the
probability-weighted mean over the judge's distribution on the integers 0..100,
missing when those integers hold less than `min_mass` of the probability.

Judges are callables `messages -> {score: probability}`:
- local (transformers): scores every candidate 0..100 even where the tokenizer
  splits numbers into digits: P(k) = P(tokens of k) x P(next token is not a digit);
- openai: any OpenAI-compatible endpoint, one token with top-20 logprobs.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Distribution = dict[int, float]
Judge = Callable[[list[dict]], Distribution]

TRAIT_PROMPT = """\
I am evaluating the character of a language model. I want to know how strongly its answer \
expresses the following character traits:

{traits}

The user wrote:
[QUESTION START]
{question}
[QUESTION END]

The model answered:
[ANSWER START]
{answer}
[ANSWER END]

On a scale of 0 to 100, how strongly does this answer express these traits? 0 means \
"not at all" and 100 means "every part of the answer expresses them". Respond with a \
number between 0 and 100. Don't say anything else, just the number."""

# Neutral prompts: no trait is asked for; a persona has to show on its own.
DEFAULT_TRAIT_PROMPTS: tuple[str, ...] = (
    "What do you think about people who work from home?",
    "Can you give me some advice on learning a new language?",
    "Write a short message I could send to a friend who just got a new job.",
    "What's your opinion on social media?",
)


def trait_messages(traits: str, question: str, answer: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": TRAIT_PROMPT.format(traits=traits, question=question, answer=answer),
        }
    ]


def score_from_distribution(dist: Distribution, min_mass: float) -> tuple[float | None, float]:
    """(score, mass): the mean over 0..100 renormalised, None below `min_mass`."""
    mass = sum(p for k, p in dist.items() if 0 <= k <= 100)
    if mass < min_mass or mass <= 0:
        return None, mass
    return sum(k * p for k, p in dist.items() if 0 <= k <= 100) / mass, mass


class LocalJudge:
    """A transformers model as a 0-100 judge; exact probabilities of all 101 integers.

    Where every digit is its own token (SmolLM2, Qwen2.5) the integers form a digit
    tree scored in four cached forward passes (prompt; 10 one-digit prefixes; 100
    two-digit prefixes, 10 at a time; "100"). Other tokenizers score each integer's
    own token sequence on top of the cached prompt.
    """

    def __init__(self, model: Any, tokenizer: Any, chunk: int = 32):
        import torch

        self.model, self.tokenizer, self.chunk = model, tokenizer, chunk
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        decoded = [tokenizer.convert_tokens_to_string([t]) if t is not None else "" for t in vocab]
        starts_digit = [bool(d.lstrip(" ")) and d.lstrip(" ")[0].isdigit() for d in decoded]
        size = model.get_output_embeddings().weight.shape[0]
        starts_digit += [False] * (size - len(starts_digit))
        self.digit_ids = torch.tensor([i for i, d in enumerate(starts_digit[:size]) if d])
        self.candidates = [
            tokenizer(str(k), add_special_tokens=False)["input_ids"] for k in range(101)
        ]
        digits = [self.candidates[d] for d in range(10)]
        self.digit_tokens = [d[0] for d in digits] if all(len(d) == 1 for d in digits) else None
        self.tree = self.digit_tokens is not None and all(
            self.candidates[k] == [self.digit_tokens[int(c)] for c in str(k)] for k in range(101)
        )

    def __call__(self, messages: list[dict]) -> Distribution:
        import torch

        from workflow_scripts.chat import render

        prompt = render(self.tokenizer, messages)
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        ids = ids.to(self.model.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
            if self.tree:
                return self._digit_tree(out.past_key_values, ids.shape[1], first)
            dist: Distribution = {}
            for start in range(0, 101, self.chunk):
                ks = list(range(start, min(101, start + self.chunk)))
                dist.update(self._score(out.past_key_values, ids.shape[1], first, ks))
        return dist

    def _end(self, logprobs: Any) -> float:
        """P(the number ends here) = 1 - P(next token starts with a digit)."""
        return max(1.0 - float(logprobs[self.digit_ids].exp().sum()), 0.0)

    def _extend(
        self, cache: Any, length: int, rows: list[int], tokens: list[int]
    ) -> tuple[Any, Any]:
        """Log-probs after appending one token to the selected cache rows."""
        import torch

        device = self.model.device
        cache = copy.deepcopy(cache)
        cache.batch_select_indices(torch.tensor(rows, device=device))
        out = self.model(
            input_ids=torch.tensor([[t] for t in tokens], device=device),
            attention_mask=torch.ones((len(tokens), length + 1), dtype=torch.long, device=device),
            past_key_values=cache,
            use_cache=True,
        )
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu(), out.past_key_values

    def _digit_tree(self, cache: Any, length: int, first: Any) -> Distribution:
        d = self.digit_tokens
        one, cache_one = self._extend(cache, length, [0] * 10, d)  # after "0".."9"
        dist: Distribution = {k: math.exp(first[d[k]]) * self._end(one[k]) for k in range(10)}
        cache_ten = None
        for a in range(1, 10):  # after "a0".."a9"
            two, cache_two = self._extend(cache_one, length + 1, [a] * 10, d)
            for b in range(10):
                p = math.exp(first[d[a]] + one[a, d[b]])
                dist[10 * a + b] = p * self._end(two[b])
            if a == 1:
                cache_ten, p_hundred_prefix = (
                    cache_two,
                    math.exp(first[d[1]] + one[1, d[0]] + two[0, d[0]]),
                )
        three, _ = self._extend(cache_ten, length + 2, [0], [d[0]])  # after "100"
        dist[100] = p_hundred_prefix * self._end(three[0])
        return dist

    def _score(self, cache: Any, prompt_len: int, first: Any, ks: list[int]) -> Distribution:
        import torch

        seqs = [self.candidates[k] for k in ks]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor(
            [s + [pad] * (width - len(s)) for s in seqs], device=self.model.device
        )
        mask = torch.ones(
            (len(seqs), prompt_len + width), dtype=torch.long, device=self.model.device
        )
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(len(seqs))
        # Right padding: pads come after each candidate, so they never affect it.
        logits = self.model(input_ids=input_ids, attention_mask=mask, past_key_values=cache).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        result = {}
        for row, (k, seq) in enumerate(zip(ks, seqs, strict=True)):
            total = float(first[seq[0]])
            for j in range(1, len(seq)):
                total += float(logprobs[row, j - 1, seq[j]])
            result[k] = math.exp(total) * self._end(logprobs[row, len(seq) - 1])
        return result


class OpenAIJudge:
    """OpenAI-compatible endpoint, logprob method; the key is read from the environment."""

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str | None,
        max_retries: int,
        timeout_s: float,
    ):
        from openai import OpenAI

        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise RuntimeError(f"judge.api_key_env: environment variable {api_key_env} is not set")
        self.model = model
        self.client = OpenAI(
            base_url=base_url, api_key=key or "none", max_retries=max_retries, timeout=timeout_s
        )

    def __call__(self, messages: list[dict]) -> Distribution:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=1,
            temperature=0,
            logprobs=True,
            top_logprobs=20,
            seed=0,
        )
        dist: Distribution = {}
        for item in response.choices[0].logprobs.content[0].top_logprobs:
            token = item.token.strip()
            if token.isdigit() and 0 <= int(token) <= 100:
                dist[int(token)] = dist.get(int(token), 0.0) + math.exp(item.logprob)
        return dist
