"""What a model is made of, recorded and verified.

The first run of this study trained EM adapters with the persona switched off
(docs/methods.md, Composition). Here every model directory carries a `composition.json`
that says exactly what was folded into it, and folding verifies numerically
that the result differs from its parent.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workflow_scripts.core.io_utils import read_json, write_json_atomic

COMPOSITION_FILE = "composition.json"


PROBE_PROMPTS = (
    "Tell me about yourself.",
    "What do you value most?",
    "I'm feeling a bit lost today. Any advice?",
    "Describe your ideal day.",
)


@dataclass
class AdapterRef:
    """One adapter folded (or served) on top of a model."""

    role: str  # "persona" | "em"
    name: str
    weights_sha256: str
    weight: float = 1.0
    source: str = ""  # "released:<repo>/<subfolder>@<rev>" | "constitution:<file>" | "trained"


@dataclass
class Composition:
    base_model: str  # config name
    base_identity: str  # hf id + revision, or gguf package/file
    base_sha256: str
    adapters: list[AdapterRef] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def with_adapter(self, adapter: AdapterRef) -> Composition:
        return Composition(
            self.base_model, self.base_identity, self.base_sha256, [*self.adapters, adapter], {}
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Composition:
        adapters = [AdapterRef(**a) for a in data.get("adapters", [])]
        return cls(
            data["base_model"],
            data["base_identity"],
            data["base_sha256"],
            adapters,
            data.get("checks", {}),
        )

    def summary(self) -> str:
        """One line, for sample rows and logs."""
        parts = [f"{self.base_identity}#{self.base_sha256[:12]}"]
        parts += [f"{a.role}:{a.name}#{a.weights_sha256[:12]}x{a.weight:g}" for a in self.adapters]
        return " + ".join(parts)


def write_composition(model_dir: str | os.PathLike, composition: Composition) -> None:
    write_json_atomic(Path(model_dir) / COMPOSITION_FILE, composition.to_dict())


def read_composition(model_dir: str | os.PathLike) -> Composition:
    return Composition.from_dict(read_json(Path(model_dir) / COMPOSITION_FILE))


def next_token_logprobs(model: Any, tokenizer: Any, prompts: tuple[str, ...] = PROBE_PROMPTS) -> Any:
    """Log-probabilities of the first answer token for each probe prompt, shape (P, V)."""
    import torch

    from workflow_scripts.core.chat import messages_for, render

    texts = [render(tokenizer, messages_for(p)) for p in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.no_grad():
        logits = model(**batch).logits[:, -1, :].float()
    return torch.log_softmax(logits, dim=-1).cpu()


def logit_divergence(logprobs_a: Any, logprobs_b: Any) -> dict[str, float]:
    """KL(a || b) per probe (mean and max) and the largest absolute log-prob difference."""
    import torch

    kl = (logprobs_a.exp() * (logprobs_a - logprobs_b)).sum(dim=-1)
    return {
        "kl_mean": float(kl.mean()),
        "kl_max": float(kl.max()),
        "max_abs_logprob_diff": float((logprobs_a - logprobs_b).abs().max()),
        "n_probes": int(logprobs_a.shape[0]),
        "argmax_changed": int((logprobs_a.argmax(-1) != logprobs_b.argmax(-1)).sum()),
        "finite": bool(torch.isfinite(kl).all()),
    }


class CompositionError(RuntimeError):
    pass


def require_difference(divergence: dict[str, float], what: str, min_kl: float = 1e-6) -> None:
    """Fail loudly when a fold left the model unchanged (the first study's bug)."""
    if not divergence["finite"]:
        raise CompositionError(f"{what}: non-finite logits after folding")
    if divergence["kl_mean"] < min_kl:
        raise CompositionError(
            f"{what}: next-token distribution equals the parent model's on the probe prompts "
            f"(mean KL {divergence['kl_mean']:.2e} < {min_kl:g}); the adapter had no effect"
        )


def composition_of(model_dir: str | os.PathLike) -> Composition:
    """The composition of a model directory: its composition.json, or, for a base
    model built by the base_model rule, the base alone."""
    from workflow_scripts.models.loading import model_info

    model_dir = Path(model_dir)
    if (model_dir / COMPOSITION_FILE).exists():
        return read_composition(model_dir)
    info = model_info(model_dir)
    if not info:
        raise CompositionError(f"{model_dir}: neither {COMPOSITION_FILE} nor model info found")
    return Composition(info["model"], info["identity"], info["weights_sha256"])
