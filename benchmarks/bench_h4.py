"""H4 throughput: activation extraction and steered sampling, in answers/s.

Model: random-initialised weights in the shape of Qwen2.5-7B-Instruct (or of
Llama-3.1-8B with --llama), built from its config (no download), bf16 on the GPU.
Answers are synthetic: a prompt of 48 tokens and an answer of 256 tokens (the
study's answers are 100-400 tokens), read with a tokenizer that maps one character
to one token, so the measurement is the model's and the library's, not a tokenizer's.

  extraction        workflow_scripts.h4.activations.extract_activations: one forward
                    per answer, batched by length, every layer's output averaged over
                    the answer tokens (hooks on every decoder layer)
  sampling idle     the engine's decode path (static cache, CUDA graph on a GPU;
                    plain generate on a CPU) with ResidualHooks installed but zero
  sampling steer    the same with a vector added at the middle layer (one hook active)
  sampling ablate   the same with a direction projected out of every layer

Sampling decodes 256 new tokens per answer (no stop token), prompts of 64 tokens.

    python benchmarks/bench_h4.py --device cuda          # H200: a few minutes
    python benchmarks/bench_h4.py --tiny                 # CPU smoke test, tiny shape

Needs only torch and transformers (and this repository). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow_scripts.h4.activations import extract_activations
from workflow_scripts.h4.hooks import ResidualHooks

QWEN_7B = {
    "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
}
LLAMA_8B = {
    "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192,
    "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}
TINY = {**QWEN_7B, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2}


class CharTokenizer:
    """One token per character: lengths are exact and nothing is downloaded."""

    pad_token_id, eos_token_id = 0, 1

    def __init__(self, vocab: int):
        self.vocab = vocab

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[-1]["content"]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [2 + (ord(c) * 7919) % (self.vocab - 2) for c in text]}


def build_model(shape: dict, llama: bool, device: str):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config = (LlamaConfig if llama else Qwen2Config)(**shape)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def synthetic_rows(n: int, prompt_len: int, answer_len: int) -> list[dict]:
    letters = "abcdefghijklmnopqrstuvwxyz "
    return [
        {"prompt": "".join(letters[(i + j) % 27] for j in range(prompt_len)), "system": None,
         "response": "".join(letters[(3 * i + j) % 27] for j in range(answer_len))}
        for i in range(n)
    ]


def time_extraction(model, device, n, batch, answer_len) -> dict:
    tokenizer = CharTokenizer(model.config.vocab_size)
    rows = synthetic_rows(n, 48, answer_len)
    extract_activations(model, tokenizer, rows[:batch], batch, 4096)  # warm-up
    sync(device)
    start = time.perf_counter()
    out = extract_activations(model, tokenizer, rows, batch, 4096)
    sync(device)
    seconds = time.perf_counter() - start
    assert out.shape[0] == n and not (out == 0).all()
    return {"what": "extraction", "batch": batch, "answers": n, "seconds": round(seconds, 3),
            "answers_per_s": round(n / seconds, 2), "tokens_per_s": round(n * (48 + answer_len) / seconds, 1)}


def sampler(model, device):
    """The engine's decode path: CUDA-graph static decode on a GPU, generate on a CPU."""
    from workflow_scripts.engines.static_decode import StaticDecoder, supports_static_decode

    if device == "cuda" and supports_static_decode(model):
        decoder = StaticDecoder(model, use_graphs=True)

        def run(ids, mask, new_tokens):
            return decoder.generate(model=model, adapter_key=None, serving=contextlib.nullcontext, input_ids=ids,
                                    attention_mask=mask, max_new_tokens=new_tokens, temperature=1.0, top_p=1.0,
                                    top_k=0, stop_ids=[-1], pad_id=0, seed=3)

        return "graphs", run

    def run(ids, mask, new_tokens):
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=True, top_k=0, top_p=1.0, temperature=1.0, pad_token_id=0)
        return out[:, ids.shape[1]:]

    return "generate", run


def time_sampling(model, device, batch, new_tokens, mode: str) -> dict:
    layers = model.config.num_hidden_layers
    hidden = model.config.hidden_size
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(100, model.config.vocab_size - 100, (batch, 64), generator=generator).to(device)
    mask = torch.ones_like(ids)
    direction = torch.randn(hidden, generator=generator)
    with ResidualHooks(model, range(layers)) as hooks:
        if mode == "steer":
            hooks.set_add(layers // 2, 4.0 * direction)
        elif mode == "ablate":
            for layer in range(layers):
                hooks.set_projection(layer, direction)
        path, run = sampler(model, device)
        run(ids, mask, 8)  # warm-up (captures the graph)
        sync(device)
        start = time.perf_counter()
        tokens = run(ids, mask, new_tokens)
        sync(device)
        seconds = time.perf_counter() - start
    assert tokens.shape == (batch, new_tokens)
    return {"what": f"sampling {mode} ({path})", "batch": batch, "answers": batch, "seconds": round(seconds, 3),
            "answers_per_s": round(batch / seconds, 2), "tokens_per_s": round(batch * new_tokens / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape (CPU smoke test)")
    parser.add_argument("--llama", action="store_true", help="Llama-3.1-8B's shape instead of Qwen2.5-7B's")
    parser.add_argument("--answers", type=int, default=None, help="answers per extraction run")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    shape = TINY if args.tiny else (LLAMA_8B if args.llama else QWEN_7B)
    model = build_model(shape, args.llama, args.device)
    tiny = args.tiny
    n = args.answers or (16 if tiny else 400)
    answer_len, new_tokens = (32, 16) if tiny else (256, 256)
    rows = []
    for batch in (4, 8) if tiny else (8, 32, 64):
        rows.append(time_extraction(model, args.device, n, batch, answer_len))
        print(json.dumps(rows[-1]), flush=True)
    for batch in (4,) if tiny else (64, 256):
        for mode in ("idle", "steer", "ablate"):
            rows.append(time_sampling(model, args.device, batch, new_tokens, mode))
            print(json.dumps(rows[-1]), flush=True)
    name = "tiny" if tiny else ("Llama-3.1-8B" if args.llama else "Qwen2.5-7B")
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"\n{name} shape, random weights, {device}, {model.dtype}\n")
    print("| what | batch | answers | seconds | answers/s | tokens/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['batch']} | {r['answers']} | {r['seconds']} | {r['answers_per_s']} | {r['tokens_per_s']} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"shape": name, "device": device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
