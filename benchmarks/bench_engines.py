"""Sampling throughput of the transformers engine on a GPU, against plain `generate`,
and what the full grid's sampling costs in GPU-hours.

Model: random-initialised weights in the shape of Qwen2.5-7B-Instruct (no download);
bf16 on one GPU. Prompts: 64 random tokens; 256 new tokens; EOS disabled so every
row decodes all steps. Variants, each at batch 1 / 64 / 256:

  generate  plain `model.generate` (the anchor)
  graphs    the engine's GPU path: static KV cache, decode step replayed as a CUDA graph
  static    the same static-cache loop without graphs (where the time goes)

plus the graph path with a served LoRA (r 32 on all linear layers, as the EM
adapters), one full sampling chunk of the study (400 answers = 8 questions x 50,
600 new tokens), the engine end to end on chat prompts, and the model's load time
(safetensors from local disk to GPU, as TransformersEngine loads it).

    python benchmarks/bench_engines.py --out $OUT           # GPU, ~6 min
    python benchmarks/bench_engines.py --tiny --out /tmp/b   # CPU smoke test, tiny shapes

Prints a Markdown table last; writes results.json (every number) under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.engines.static_decode import StaticDecoder

QWEN_7B = {  # Qwen2.5-7B-Instruct's config.json, the shape that matters
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
TINY = {
    **QWEN_7B,
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

# the full grid's sampling stage (config/config.yaml): answers and tokens
GRID = {
    "models": 2,
    "personas": 12,
    "conditions": 9,
    "questions": 8,
    "n": 50,
    "max_new_tokens": 600,
}


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = "cpu" if args.tiny else "cuda"
        self.start = time.time()
        self.rows: list[dict] = []
        self.info: dict = {}
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.args.budget_s - (time.time() - self.start)

    def sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def save(self):
        (self.out / "results.json").write_text(
            json.dumps({"info": self.info, "rows": self.rows}, indent=2)
        )

    def record(self, variant, batch, new_tokens, seconds, **extra):
        row = {
            "variant": variant,
            "batch": batch,
            "new_tokens": new_tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(batch * new_tokens / seconds, 1),
            **extra,
        }
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.save()

    def guarded(self, name, need_s, fn):
        if self.left() < need_s:
            print(f"skip {name}: {self.left():.0f}s left, needs ~{need_s}s", flush=True)
            self.info.setdefault("skipped", []).append(name)
            return None
        try:
            return fn()
        except Exception as error:  # keep measuring the other variants
            print(f"FAILED {name}: {error!r}", flush=True)
            traceback.print_exc()
            self.info.setdefault("failed", {})[name] = repr(error)[:2000]
            self.save()
            return None


def build_model(shape: dict, device: str):
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**shape)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def prompts(batch: int, length: int, vocab: int, device: str, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, vocab - 100, (batch, length), generator=generator).to(device)
    return ids, torch.ones_like(ids)


def time_generate(bench, model, batch, new_tokens, repeats):
    ids, mask = prompts(batch, 64, model.config.vocab_size, bench.device)
    kwargs = dict(
        max_new_tokens=new_tokens,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        pad_token_id=0,
    )
    with torch.inference_mode():
        model.generate(ids, attention_mask=mask, **{**kwargs, "max_new_tokens": 4})
        times = []
        for _ in range(repeats):
            bench.sync()
            t = time.perf_counter()
            out = model.generate(ids, attention_mask=mask, **kwargs)
            bench.sync()
            times.append(time.perf_counter() - t)
    assert out.shape[1] == 64 + new_tokens
    bench.record("generate", batch, new_tokens, statistics.median(times), repeats=repeats)


def time_static(
    bench, decoder, model, batch, new_tokens, repeats, variant, prompt_len=64, adapter_key=None
):
    import contextlib

    ids, mask = prompts(batch, prompt_len, model.config.vocab_size, bench.device)
    args = dict(
        model=model,
        adapter_key=adapter_key,
        serving=contextlib.nullcontext,
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        stop_ids=[-1],
        pad_id=0,
        seed=3,
    )
    bench.sync()
    t = time.perf_counter()
    first = decoder.generate(**args)  # builds the cache (and captures the graph)
    bench.sync()
    setup = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        bench.sync()
        t = time.perf_counter()
        again = decoder.generate(**args)
        bench.sync()
        times.append(time.perf_counter() - t)
    assert again.shape == (batch, new_tokens) and torch.equal(first, again), "not deterministic"
    bench.record(
        variant,
        batch,
        new_tokens,
        statistics.median(times),
        repeats=repeats,
        first_call_s=round(setup, 2),
        prompt_len=prompt_len,
    )


def check_greedy_agreement(bench, model, decoder):
    """Greedy tokens of the graph path vs generate (bf16 kernels differ slightly: report
    the share of rows whose first 16 tokens agree, and of all tokens)."""
    import contextlib

    ids, mask = prompts(8, 48, model.config.vocab_size, bench.device, seed=5)
    mask[:4, :10] = 0  # left padding on half the rows
    ids[:4, :10] = 0
    with torch.inference_mode():
        reference = model.generate(
            ids, attention_mask=mask, max_new_tokens=32, do_sample=False, pad_token_id=0
        )[:, 48:]
    fast = decoder.generate(
        model=model,
        adapter_key="greedy-check",
        serving=contextlib.nullcontext,
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=32,
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        stop_ids=[-1],
        pad_id=0,
        seed=0,
    )
    bench.info["greedy_rows_first16_equal"] = int((reference[:, :16] == fast[:, :16]).all(1).sum())
    bench.info["greedy_token_agreement"] = round(float((reference == fast).float().mean()), 4)
    print(
        "greedy agreement",
        bench.info["greedy_rows_first16_equal"],
        "/ 8 rows;",
        bench.info["greedy_token_agreement"],
        "of tokens",
        flush=True,
    )


def check_teacher_forced(bench, model, decoder):
    """Greedy tokens of each path, checked against one uncached forward pass over the
    prompt plus those tokens: where a path's token is not that pass's argmax, how far
    below the argmax its logit lies (bf16 rounding: a small fraction of a logit)."""
    import contextlib

    ids, mask = prompts(8, 48, model.config.vocab_size, bench.device, seed=6)
    mask[:4, :10] = 0
    ids[:4, :10] = 0
    with torch.inference_mode():
        generated = model.generate(
            ids, attention_mask=mask, max_new_tokens=32, do_sample=False, pad_token_id=0
        )[:, 48:]
    fast = decoder.generate(
        model=model,
        adapter_key="greedy-check",
        serving=contextlib.nullcontext,
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=32,
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        stop_ids=[-1],
        pad_id=0,
        seed=0,
    )
    for name, tokens in (("generate", generated), ("fast", fast)):
        with torch.inference_mode():
            full_mask = torch.cat([mask, torch.ones_like(tokens)], dim=1)
            logits = model(torch.cat([ids, tokens], dim=1), attention_mask=full_mask).logits
        logits = logits[:, 47:79].float()
        best = logits.max(dim=-1).values
        chosen = logits.gather(-1, tokens[..., None])[..., 0]
        shortfall = best - chosen
        top2 = logits.topk(2, dim=-1).values
        bench.info[f"teacher_forced_{name}"] = {
            "argmax_agreement": round(float((shortfall == 0).float().mean()), 4),
            "max_shortfall": round(float(shortfall.max()), 4),
            "median_top1_top2_gap": round(float((top2[..., 0] - top2[..., 1]).median()), 4),
            "logit_std": round(float(logits.std()), 3),
        }
        print(name, bench.info[f"teacher_forced_{name}"], flush=True)


def add_lora(model):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=32,
        lora_alpha=64,
        use_rslora=True,
        lora_dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        init_lora_weights=False,
    )
    torch.manual_seed(2)
    return get_peft_model(model, config).eval()


def measure_bandwidth(bench):
    if bench.device != "cuda":
        return
    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t) / 10
    bench.info["copy_bandwidth_TBps"] = round(2 * x.numel() / seconds / 1e12, 2)  # read + write
    del x, y
    torch.cuda.empty_cache()


def time_load(bench, model, model_dir: Path):
    """Write the weights once (safetensors), then load them as the engine does."""
    import subprocess

    from workflow_scripts.engines.transformers_engine import TransformersEngine

    t = time.perf_counter()
    model.save_pretrained(model_dir)
    bench.info["save_s"] = round(time.perf_counter() - t, 1)
    tokenizer_dir = Path(bench.args.tokenizer_dir)
    for f in tokenizer_dir.iterdir():  # the engine needs a tokenizer beside the weights
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            (model_dir / f.name).write_bytes(f.read_bytes())
    config = json.loads((model_dir / "config.json").read_text())
    config.update(eos_token_id=2, bos_token_id=1, pad_token_id=2)
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    size = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    bench.info["weights_GB"] = round(size / 1e9, 2)
    dropped = (
        bench.device == "cuda"
        and subprocess.run(  # the device machine is ours alone
            "sync; echo 3 > /proc/sys/vm/drop_caches", shell=True
        ).returncode
        == 0
    )
    loads = {}
    for label in ("cold" if dropped else "page-cache", "page-cache"):
        bench.sync()
        t = time.perf_counter()
        engine = TransformersEngine(str(model_dir), device=bench.device, max_batch_sequences=64)
        bench.sync()
        loads[label] = round(time.perf_counter() - t, 1)
        if label == "cold":
            del engine
            torch.cuda.empty_cache() if bench.device == "cuda" else None
    bench.info["engine_load_s"] = loads
    print("load", loads, flush=True)
    return engine


def time_engine(bench, engine, batch, new_tokens):
    """The engine end to end: chat template, tokenizer, decode, completions."""
    from workflow_scripts.engines.base import GenerationRequest, SamplingParams

    params = SamplingParams(max_new_tokens=new_tokens, n=batch // 8)
    requests = [
        GenerationRequest(
            key=f"q{i}",
            seed=i,
            params=params,
            messages=({"role": "user", "content": f"Question {i}: " + "word " * 40},),
        )
        for i in range(8)
    ]
    engine.max_batch_sequences = batch
    list(engine.generate(requests))  # builds the cache and captures the graph for this shape
    bench.sync()
    t = time.perf_counter()
    completions = [c for b in engine.generate(requests) for c in b]
    bench.sync()
    seconds = time.perf_counter() - t
    generated = sum(c.n_completion_tokens for c in completions)
    bench.record(
        f"engine ({engine.decode})",
        batch,
        new_tokens,
        seconds,
        counted_tokens=generated,
        counted_tokens_per_s=round(generated / seconds, 1),
    )


def time_compiled_generate(bench, model, batch, new_tokens):
    """transformers' own fast path: generate with a static cache, which compiles the
    decode step (torch.compile, CUDA graphs); the first call pays the compilation."""
    ids, mask = prompts(batch, 64, model.config.vocab_size, bench.device)
    model.generation_config.eos_token_id = None
    kwargs = dict(
        max_new_tokens=new_tokens,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        pad_token_id=0,
        cache_implementation="static",
    )
    with torch.inference_mode():
        bench.sync()
        t = time.perf_counter()
        model.generate(ids, attention_mask=mask, **kwargs)
        bench.sync()
        first = time.perf_counter() - t
        t = time.perf_counter()
        model.generate(ids, attention_mask=mask, **kwargs)
        bench.sync()
    bench.record(
        "generate+static+compile",
        batch,
        new_tokens,
        time.perf_counter() - t,
        first_call_s=round(first, 1),
    )


def grid_estimate(bench) -> dict:
    """GPU-hours of the grid's sampling from the measured batch throughput."""
    answers = GRID["models"] * GRID["personas"] * GRID["conditions"] * GRID["questions"] * GRID["n"]
    by_variant = {(r["variant"], r["batch"], r["new_tokens"]): r for r in bench.rows}
    chunk = by_variant.get(("graphs+lora", 400, 600)) or by_variant.get(("graphs", 400, 600))
    estimate = {"answers": answers, "tokens_if_300_each": answers * 300}
    if chunk:
        # static batches run until their longest answer ends: with 400 answers a batch,
        # one reaches 600 tokens almost surely, so every answer costs 600 steps
        seconds_per_answer = chunk["seconds"] / chunk["batch"]
        estimate["transformers_gpu_hours"] = round(answers * seconds_per_answer / 3600, 1)
    bench.info["grid"] = estimate
    return estimate


def table(bench) -> str:
    lines = [
        "| variant | batch | new tokens | s | tokens/s | x generate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    anchor = {r["batch"]: r["tokens_per_s"] for r in bench.rows if r["variant"] == "generate"}
    for r in bench.rows:
        ratio = r["tokens_per_s"] / anchor[r["batch"]] if r["batch"] in anchor else None
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['new_tokens']} | {r['seconds']} | "
            f"{r['tokens_per_s']:,.0f} | {'' if ratio is None else f'{ratio:.1f}x'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with tiny shapes")
    parser.add_argument("--out", default="bench-engines-out")
    parser.add_argument("--budget-s", type=float, default=540)
    parser.add_argument(
        "--tokenizer-dir", default=str(Path.home() / ".cache/persona-em/smollm2-135m")
    )
    parser.add_argument("--model-dir", default="/tmp/bench-engines-model")
    parser.add_argument("--check-only", action="store_true", help="only the correctness checks")
    args = parser.parse_args()
    bench = Bench(args)
    bench.info.update(
        torch=torch.__version__,
        device=bench.device,
        gpu=torch.cuda.get_device_name() if bench.device == "cuda" else None,
    )
    import transformers

    bench.info["transformers"] = transformers.__version__
    sizes = (1, 8, 16) if args.tiny else (1, 64, 256)
    new = 16 if args.tiny else 256
    chunk_batch, chunk_new = (16, 24) if args.tiny else (400, 600)

    t = time.perf_counter()
    model = build_model(TINY if args.tiny else QWEN_7B, bench.device)
    bench.sync()
    bench.info["build_s"] = round(time.perf_counter() - t, 1)
    bench.info["params_B"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    measure_bandwidth(bench)
    print(json.dumps(bench.info), flush=True)

    use_graphs = bench.device == "cuda"
    fast = StaticDecoder(model, use_graphs=use_graphs)
    fast_name = "graphs" if use_graphs else "static"
    bench.guarded("greedy check", 30, lambda: check_greedy_agreement(bench, model, fast))
    bench.guarded("teacher-forced check", 30, lambda: check_teacher_forced(bench, model, fast))
    if args.check_only:
        bench.save()
        return
    for batch in sizes:
        bench.guarded(
            f"{fast_name} {batch}",
            30,
            lambda b=batch: time_static(bench, fast, model, b, new, 3, fast_name),
        )
    for batch in sizes:
        bench.guarded(
            f"generate {batch}",
            60 if batch == 1 else 40,
            lambda b=batch: time_generate(bench, model, b, new, 1),
        )
    if use_graphs:
        eager = StaticDecoder(model, use_graphs=False)
        bench.guarded(
            "static 64", 60, lambda: time_static(bench, eager, model, 64, new, 1, "static")
        )
        del eager
    bench.guarded(
        "chunk", 60, lambda: time_static(bench, fast, model, chunk_batch, chunk_new, 1, fast_name)
    )
    peft_model = bench.guarded("lora", 20, lambda: add_lora(model))
    if peft_model is not None:
        lora_fast = StaticDecoder(model, use_graphs=use_graphs)
        for batch in (sizes[1], sizes[2]):
            bench.guarded(
                f"lora {batch}",
                30,
                lambda b=batch: time_static(
                    bench, lora_fast, peft_model, b, new, 2, f"{fast_name}+lora", adapter_key="em"
                ),
            )
        bench.guarded(
            "lora chunk",
            60,
            lambda: time_static(
                bench,
                lora_fast,
                peft_model,
                chunk_batch,
                chunk_new,
                1,
                f"{fast_name}+lora",
                adapter_key="em",
            ),
        )
        del lora_fast
        model = peft_model.unload()
    fast = None  # frees its caches and graphs
    if bench.device == "cuda":
        torch.cuda.empty_cache()
    engine = bench.guarded("load", 120, lambda: time_load(bench, model, Path(args.model_dir)))
    if engine is not None:
        del model
        bench.guarded("engine 64", 30, lambda: time_engine(bench, engine, sizes[1], new))
        bench.guarded("engine 256", 30, lambda: time_engine(bench, engine, sizes[2], new))
        if bench.device == "cuda":
            bench.guarded(
                "generate+static+compile 64",
                200,
                lambda: time_compiled_generate(bench, engine.model, sizes[1], new),
            )
    grid_estimate(bench)
    bench.info["total_s"] = round(time.time() - bench.start, 1)
    bench.save()
    print(json.dumps(bench.info, indent=1))
    print(table(bench))


if __name__ == "__main__":
    main()
