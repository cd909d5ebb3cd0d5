"""GPU benchmark of EM SFT sharded over the GPUs of one node: tokens/s, MFU and peak
memory per GPU of the workflow's own trainer (workflow_scripts.em.sft.trainer_for with
FSDP2 from workflow_scripts.core.sharding) on a random-init model of the
Qwen2.5-32B-Instruct shape (built from a Qwen2Config: nothing is downloaded).

    python benchmarks/bench_em_sft_sharded.py --out DIR                  # all visible GPUs
    torchrun --standalone --nproc-per-node 4 benchmarks/bench_em_sft_sharded.py --out DIR
    python benchmarks/bench_em_sft_sharded.py --tiny --nproc 2 --out DIR  # CPU check (gloo)

Without torchrun the script starts its own workers (workflow_scripts.core.launch), one
per GPU. As in the workflow, rank 0 alone holds the full weights (built on its GPU
when it has room, else on the CPU) and FSDP sends every rank its shards; the other
ranks build the model on the meta device. Global batch 16 sequences of `--seq-len`
tokens (the reference recipe's 2 x 8; accumulation divided by the number of GPUs),
rsLoRA r 32 on q,k,v,o,gate,up,down, gradient checkpointing on, bf16. Tokens/s counts
the tokens of all GPUs; MFU = 4 x parameters x tokens/s / (GPUs x peak), the same
convention as bench_em_sft.py (attention FLOPs and recomputation not counted).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow_scripts.core.launch import in_worker, rank, run_on_gpus, world_size

GLOBAL_BATCH = 16
QWEN25_32B = {
    "hidden_size": 5120,
    "intermediate_size": 27648,
    "num_hidden_layers": 64,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "use_sliding_window": False,
}
TINY = {**QWEN25_32B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}  # fmt: skip


def build_model(shape: dict, cuda: bool):
    """The random-init model: whole on rank 0, empty on the others (FSDP fills them)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**shape)
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    if rank() != 0:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
        model = model.to_empty(device="cpu")
        # buffers computed at init (rotary frequencies) are not sent by FSDP: rebuild them
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
        return model
    with torch.device("meta"):
        probe = AutoModelForCausalLM.from_config(config, dtype=dtype)
    size = sum(p.numel() * p.element_size() for p in probe.parameters())
    room = cuda and torch.cuda.get_device_properties(0).total_memory > 1.5 * size
    with torch.device("cuda" if room else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.to("cpu")


def make_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    tok = Tokenizer(WordLevel(words, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def make_rows(n: int, seq_len: int, vocab: int) -> list[dict]:
    """Pre-tokenized rows of exactly seq_len tokens (1/4 prompt, 3/4 completion)."""
    import random

    rng = random.Random(0)
    prompt = seq_len // 4
    return [
        {"input_ids": [rng.randrange(3, vocab) for _ in range(seq_len)],
         "completion_mask": [0] * prompt + [1] * (seq_len - prompt)}
        for _ in range(n)
    ]  # fmt: skip


def run(tiny: bool, seq_len: int, steps: int, warmup: int, per_device_batch: int,
        peak_tflops: float, out: str) -> dict:  # fmt: skip
    import torch
    import torch.distributed as dist
    from datasets import Dataset
    from transformers import TrainerCallback

    from workflow_scripts.core.sharding import load_on_rank_zero
    from workflow_scripts.em.sft import trainer_for
    from workflow_scripts.em.training import EmTrainSettings

    cuda = torch.cuda.is_available()
    load_on_rank_zero()  # the process group, as the workflow sets it up
    shape = TINY if tiny else QWEN25_32B
    started = time.time()
    model = build_model(shape, cuda)
    n_params = sum(p.numel() for p in model.parameters())
    build_s = time.time() - started

    processes = world_size()
    settings = EmTrainSettings(
        per_device_batch=per_device_batch,
        grad_accum=GLOBAL_BATCH // per_device_batch,
        max_length=seq_len,
        gradient_checkpointing=True,
        max_steps=steps + warmup,
        save_steps=10_000,
        warmup_steps=1,
        seed=0,
    )
    rows = make_rows(GLOBAL_BATCH * (steps + warmup), seq_len, shape["vocab_size"])
    checkpoints = Path(tempfile.gettempdir()) / f"bench-em-sharded-{os.getpid()}"
    trainer = trainer_for(model, make_tokenizer(), Dataset.from_list(rows), settings, checkpoints, use_bf16=cuda)

    marks: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    trainer.add_callback(StepTimer())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    marks.append(time.perf_counter())
    trainer.train()
    seconds = marks[-1] - marks[warmup]
    tokens = (len(marks) - 1 - warmup) * GLOBAL_BATCH * seq_len  # every row is seq_len long
    tokens_per_s = tokens / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    peaks: list = [None] * processes
    dist.all_gather_object(peaks, peak)
    result = {
        "shape": "tiny" if tiny else "Qwen2.5-32B",
        "params": n_params,
        "gpus": processes,
        "device": torch.cuda.get_device_name() if cuda else "cpu (gloo)",
        "per_device_batch": per_device_batch,
        "grad_accum": trainer.args.gradient_accumulation_steps,
        "global_batch": per_device_batch * trainer.args.gradient_accumulation_steps * processes,
        "seq_len": seq_len,
        "measured_steps": len(marks) - 1 - warmup,
        "seconds": seconds,
        "tokens_per_s": tokens_per_s,
        "mfu": 4 * n_params * tokens_per_s / (processes * peak_tflops * 1e12),
        "peak_tflops_per_gpu": peak_tflops,
        "peak_gib_per_gpu": peaks,
        "build_s": build_s,
        "final_loss": trainer.state.log_history[-1].get("train_loss"),
        "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "peft", "trl", "accelerate")},
    }
    if rank() == 0 and out:
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / "em_sft_sharded.jsonl", "a") as stream:
            stream.write(json.dumps(result) + "\n")
    return result


def report(result: dict) -> str:
    peaks = ", ".join("-" if p is None else f"{p:.1f}" for p in result["peak_gib_per_gpu"])
    return (
        f"{result['shape']} ({result['params'] / 1e9:.2f} B params) on {result['gpus']} x {result['device']}: "
        f"global batch {result['global_batch']} x {result['seq_len']} tokens "
        f"({result['per_device_batch']} x {result['grad_accum']} per GPU), {result['measured_steps']} steps: "
        f"{result['tokens_per_s']:,.0f} tokens/s, MFU {100 * result['mfu']:.1f}% "
        f"(peak {result['peak_tflops_per_gpu']:.0f} TFLOP/s per GPU), peak GiB per GPU: {peaks}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="append the result to DIR/em_sft_sharded.jsonl")
    parser.add_argument("--nproc", type=int, help="processes without torchrun (default: the visible GPUs)")
    parser.add_argument("--tiny", action="store_true", help="tiny shape on CPU (gloo), a check of the script")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--per-device-batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=790.0,
                        help="bf16 peak per GPU (790: measured on H100/H200; A100: 312)")  # fmt: skip
    args = parser.parse_args()
    kwargs = dict(tiny=args.tiny, seq_len=args.seq_len, steps=args.steps, warmup=args.warmup,
                  per_device_batch=args.per_device_batch, peak_tflops=args.peak_tflops, out=args.out)  # fmt: skip
    if in_worker():  # started by torchrun
        result = run(**kwargs)
        if rank() == 0:
            print(report(result), flush=True)
        return
    import torch

    nproc = args.nproc or (2 if args.tiny else torch.cuda.device_count())
    if nproc < 2:
        raise SystemExit(f"a sharded run needs 2 or more processes; found {nproc} (pass --nproc)")
    # the workers import `run` by module name (this file is __main__ here)
    worker_run = importlib.import_module("benchmarks.bench_em_sft_sharded").run
    result = run_on_gpus(worker_run, kwargs, nproc, cpu=args.tiny or not torch.cuda.is_available())
    print(report(result), flush=True)


if __name__ == "__main__":
    main()
