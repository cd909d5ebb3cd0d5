"""GPU benchmark of EM SFT: tokens/s, peak memory and MFU of the workflow's own trainer
(workflow_scripts.em.sft.trainer_for: trl SFTTrainer, LoRA from em_training.lora_config,
completion-only labels, the batching modes of em/batching.py) on a random-init model
with the Qwen2.5-7B-Instruct shape (no weights are reachable on the GPU machine).

    python benchmarks/bench_em_sft.py --out DIR            # every variant, a table
    python benchmarks/bench_em_sft.py --tiny --out DIR     # CPU smoke test of the script

A first process checks the packed attention against sdpa; then each variant runs in
its own process (clean peak memory), on rows of one length mix: fixed (seq_len),
uniform in [seq_len/8, seq_len], or skewed like chat data (lognormal, median
seq_len/4, sigma 0.8, clipped to [seq_len/16, seq_len]). Rows are pre-tokenized:
`input_ids` plus `completion_mask` (a 1/4 prompt, 3/4 completion split), so trl's
tokenisation is skipped but label building, collation, loss and optimizer are the
pipeline's. Tokens are real (non-pad) tokens. Model FLOPs = 4 x parameters x tokens
(LoRA: frozen base, no weight gradients; attention FLOPs and gradient-checkpointing
recomputation not counted), against a bf16 peak of 790 TFLOP/s (measured on these
machines).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEAK_TFLOPS = 790.0
GLOBAL_BATCH = 16  # reference: 2 x 8

QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "use_sliding_window": False,
}
TINY = {**QWEN25_7B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}


@dataclass
class Variant:
    name: str
    per_device_batch: int
    gradient_checkpointing: bool
    lengths: str = "fixed"  # fixed | uniform | skewed (make_rows)
    use_liger_kernel: bool = False
    batching: str = "padded"  # em/batching.py: padded | causal | packed
    length_grouping: str = "none"  # em/batching.py: none | batch | dataset
    warmup: int = 2
    steps: int = 5
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def grad_accum(self) -> int:
        return GLOBAL_BATCH // self.per_device_batch


SLOW = {"warmup": 1, "steps": 2}
FAST = {"gradient_checkpointing": False, "use_liger_kernel": True}


def _candidates(lengths: str, first: bool) -> list[Variant]:
    """The variable-length candidates (Liger kernels, no checkpointing), the most
    promising first."""
    if first:
        return [
            Variant(f"{lengths}_packed_b16", 16, batching="packed", lengths=lengths, **FAST,
                    note="one packed row per step"),
            Variant(f"{lengths}_causal_dataset_b16", 16, batching="causal", length_grouping="dataset",
                    lengths=lengths, **FAST, note="no mask, global batches of similar length"),
            Variant(f"{lengths}_causal_batch_b4", 4, batching="causal", length_grouping="batch",
                    lengths=lengths, **FAST, note="no mask, each global batch sorted"),
        ]
    return [
        Variant(f"{lengths}_causal_dataset_b4", 4, batching="causal", length_grouping="dataset",
                lengths=lengths, **FAST),
        Variant(f"{lengths}_packed_b8", 8, batching="packed", lengths=lengths, **FAST),
        Variant(f"{lengths}_liger_no_gc_b4", 4, lengths=lengths, **FAST, note="padded with mask (best before)"),
    ]


VARIANTS = [  # in order of priority: a run that hits its time budget drops the last
    Variant("reference", 2, True, **SLOW, note="schema defaults: sdpa, GC on, 2 x 8, padded"),
    Variant("liger_no_gc_b4", 4, **FAST, note="best at fixed length"),
    Variant("uniform_reference", 2, True, lengths="uniform", **SLOW),
    Variant("skewed_reference", 2, True, lengths="skewed", **SLOW),
    *_candidates("uniform", first=True),
    *_candidates("skewed", first=True),
    *_candidates("uniform", first=False),
    *_candidates("skewed", first=False),
    Variant("uniform_packed_b16_noliger", 16, False, lengths="uniform", batching="packed"),
    Variant("skewed_packed_b16_noliger", 16, False, lengths="skewed", batching="packed"),
]


def row_lengths(n: int, seq_len: int, lengths: str, seed: int = 0) -> list[int]:
    """fixed: every row seq_len. uniform: uniform in [seq_len/8, seq_len]. skewed, like
    chat fine-tuning data (most rows short, a long tail): lognormal with median
    seq_len/4 and sigma 0.8, clipped to [seq_len/16, seq_len]."""
    import math
    import random

    rng = random.Random(seed)
    if lengths == "fixed":
        return [seq_len] * n
    if lengths == "uniform":
        return [rng.randint(seq_len // 8, seq_len) for _ in range(n)]
    median = math.log(seq_len / 4)
    return [min(seq_len, max(seq_len // 16, round(rng.lognormvariate(median, 0.8)))) for _ in range(n)]


def make_rows(n: int, seq_len: int, lengths: str, vocab: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for length in row_lengths(n, seq_len, lengths, seed):
        prompt = length // 4
        rows.append({
            "input_ids": [rng.randrange(3, vocab) for _ in range(length)],
            "completion_mask": [0] * prompt + [1] * (length - prompt),
        })
    return rows


def make_tokenizer(vocab: int):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    tok = Tokenizer(WordLevel(words, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def run_variant(variant: Variant, seq_len: int, steps: int, warmup: int, tiny: bool, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, TrainerCallback

    from workflow_scripts.em.sft import trainer_for
    from workflow_scripts.em.training import EmTrainSettings

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    shape = TINY if tiny else QWEN25_7B
    config = AutoConfig.for_model(**{k: v for k, v in shape.items() if k != "architectures"})
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa"
        )
    n_params = sum(p.numel() for p in model.parameters())
    init_s = time.time() - t0

    rows = make_rows(GLOBAL_BATCH * (steps + warmup), seq_len, variant.lengths, shape["vocab_size"])
    settings = EmTrainSettings(
        per_device_batch=variant.per_device_batch,
        grad_accum=variant.grad_accum,
        max_length=seq_len,
        gradient_checkpointing=variant.gradient_checkpointing,
        use_liger_kernel=variant.use_liger_kernel,
        batching=variant.batching,
        length_grouping=variant.length_grouping,
        max_steps=steps + warmup,
        save_steps=10_000,
        warmup_steps=1,
        seed=0,
    )
    trainer = trainer_for(model, make_tokenizer(shape["vocab_size"]), Dataset.from_list(rows), settings,
                          Path(tempfile.gettempdir()) / f"bench-em-ckpt-{variant.name}", use_bf16=cuda)

    marks: list[tuple[float, int]] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), trainer._total_train_tokens))

    trainer.add_callback(StepTimer())
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    marks.append((time.perf_counter(), 0))
    trainer.train()
    (t_start, tok_start), (t_end, tok_end) = marks[warmup], marks[-1]
    seconds = t_end - t_start
    tokens = tok_end - tok_start
    tokens_per_s = tokens / seconds
    mfu = 4 * n_params * tokens_per_s / (PEAK_TFLOPS * 1e12)
    step_times = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    step_tokens = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    return {
        "variant": variant.name,
        "note": variant.note,
        "per_device_batch": variant.per_device_batch,
        "grad_accum": variant.grad_accum,
        "gradient_checkpointing": variant.gradient_checkpointing,
        "liger": variant.use_liger_kernel,
        "batching": variant.batching,
        "length_grouping": variant.length_grouping,
        "lengths": variant.lengths,
        "seq_len": seq_len,
        "mean_row_tokens": sum(len(r["input_ids"]) for r in rows) / len(rows),
        "params": n_params,
        "measured_steps": len(marks) - 1 - warmup,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "step_s": step_times,
        "step_tokens": step_tokens,
        "init_s": init_s,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "versions": _versions(),
    }


def check_varlen(tiny: bool) -> dict:
    """The packed mode's attention against one sdpa call per row in float32 (forward
    and gradients), on the model's head shape: 28 query heads, 4 key/value heads."""
    import torch
    import torch.nn.functional as F

    from workflow_scripts.em import batching

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    lengths = [37, 700, 1224, 5] if not tiny else [7, 30, 3]
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    heads, kv_heads, dim = 28, 4, 128
    q, k, v = (torch.randn(1, h, sum(lengths), dim, device=device, dtype=dtype, generator=gen).requires_grad_()
               for h in (heads, kv_heads, kv_heads))
    kernel = batching._varlen_kernel() if cuda else None
    out, _ = batching.varlen_attention(None, q, k, v, None, scaling=dim**-0.5, cu_seq_lens_q=cu,
                                       cu_seq_lens_k=cu, max_length_q=max(lengths), max_length_k=max(lengths))
    grad_out = torch.randn(out.shape, device=device, dtype=dtype, generator=gen)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    q32, k32, v32 = (t.detach().double().requires_grad_() for t in (q, k, v))
    parts, bounds = [], cu.tolist()
    for a, b in itertools.pairwise(bounds):
        parts.append(F.scaled_dot_product_attention(
            q32[:, :, a:b], k32[:, :, a:b], v32[:, :, a:b], is_causal=True, enable_gqa=True
        ).transpose(1, 2))
    ref = torch.cat(parts, dim=1)
    ref_grads = torch.autograd.grad(ref, (q32, k32, v32), grad_out.double())

    def rel(x, y):
        return float((x.double() - y).norm() / y.norm())

    return {
        "check": "varlen_attention",
        "kernel": f"{kernel.__module__}.{kernel.__name__}" if kernel else "sdpa per row (no CUDA)",
        "kernel_kwargs": str(batching._varlen_kwargs(kernel, heads, kv_heads)) if kernel else None,
        "rel_err_out": rel(out, ref),
        "rel_err_grad_q": rel(grads[0], ref_grads[0]),
        "rel_err_grad_k": rel(grads[1], ref_grads[1]),
        "rel_err_grad_v": rel(grads[2], ref_grads[2]),
        "versions": _versions(),
    }


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "peft", "trl", "liger-kernel"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| variant | lengths | batch x accum | GC | Liger | batching | grouping | tokens/s | MFU | peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in results:
        if "check" in r:
            continue
        if "error" in r:
            lines.append(f"| {r['variant']} | | | | | | | failed: {r['error'][:60]} | | |")
            continue
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        lines.append(
            f"| {r['variant']} | {r['lengths']} | {r['per_device_batch']} x {r['grad_accum']} | "
            f"{'on' if r['gradient_checkpointing'] else 'off'} | {'yes' if r['liger'] else 'no'} | "
            f"{r['batching']} | {r['length_grouping']} | {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f}% | {peak} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "benchmarks/em_sft")))
    parser.add_argument("--variant", help="run one variant in this process (internal)")
    parser.add_argument("--check", action="store_true", help="check the packed attention (internal)")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, help="measured steps (default: the variant's)")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: the variant's)")
    parser.add_argument("--tiny", action="store_true", help="tiny shape, for a CPU check of the script")
    parser.add_argument("--budget-s", type=float, default=450, help="start no variant after this")
    parser.add_argument("--variant-timeout-s", type=float, default=120)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"

    if args.check or args.variant:
        if args.check:
            name, run = "varlen_check", lambda: check_varlen(args.tiny)
        else:
            variant = next(v for v in VARIANTS if v.name == args.variant)
            steps = variant.steps if args.steps is None else args.steps
            warmup = variant.warmup if args.warmup is None else args.warmup
            name, run = variant.name, lambda: run_variant(variant, args.seq_len, steps, warmup, args.tiny, args.out)
        try:
            result = run()
        except Exception as err:  # recorded in the table, the next variant still runs
            result = {"variant": name, "error": f"{type(err).__name__}: {err}"}
        with results_file.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k not in ("step_s", "step_tokens")}), flush=True)
        return

    started = time.time()
    base = [sys.executable, __file__, "--out", str(args.out), "--seq-len", str(args.seq_len)]
    base += ["--tiny"] if args.tiny else []
    base += ["--steps", str(args.steps)] if args.steps is not None else []
    base += ["--warmup", str(args.warmup)] if args.warmup is not None else []
    subprocess.run([*base, "--check"], timeout=args.variant_timeout_s, check=False)
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only]
    for variant in chosen:
        if time.time() - started > args.budget_s:
            print(f"budget spent: {variant.name} and later not run", flush=True)
            break
        try:
            subprocess.run([*base, "--variant", variant.name], timeout=args.variant_timeout_s, check=False)
        except subprocess.TimeoutExpired:
            with results_file.open("a") as fh:
                fh.write(json.dumps({"variant": variant.name, "error": "timeout"}) + "\n")
    results = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []
    text = table(results)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
