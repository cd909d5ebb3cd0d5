"""Rule fold_persona: merge a persona adapter into the base model (merge_and_unload)
and prove that it changed the model.

The folded directory holds the merged weights, the tokenizer, `composition.json`
(base identity and hash, the persona adapter's content hash, fold weight and
source, the logit check against the base model, the hash of the folded weights)
and `fold.json` (the adapter's settings and any metadata files it came with).
EM training starts from here and re-checks the weight hash (workflow_scripts.em.sft).
"""

import logging
from pathlib import Path

from workflow_scripts.core.composition import (
    PROBE_PROMPTS,
    AdapterRef,
    Composition,
    logit_divergence,
    next_token_logprobs,
    require_difference,
    write_composition,
)
from workflow_scripts.core.hashing import weights_hash
from workflow_scripts.core.io_utils import (
    InputError,
    atomic_dir,
    check_safetensors,
    read_json,
    write_json_atomic,
)
from workflow_scripts.models.loading import MODEL_INFO, device_for_run, load_tokenizer, model_info

log = logging.getLogger(__name__)


FOLD_RECORD = "fold.json"


ADAPTER_CONFIG = "adapter_config.json"


ADAPTER_CONFIG_KEYS = ("r", "lora_alpha", "use_rslora", "target_modules", "base_model_name_or_path", "peft_type")


def adapter_source_label(persona_entry: dict, model: str) -> str:
    """Where the persona adapter came from, in one string for composition.json."""
    source = persona_entry["source"]
    if source == "released":
        spec = persona_entry["released"][model]
        subfolder = f"/{spec['subfolder']}" if spec.get("subfolder") else ""
        return f"released:{spec['repo']}{subfolder}@{spec.get('revision', 'main')}"
    if source == "constitution":
        return f"constitution:{persona_entry['constitution']}"
    raise InputError(f"personas: source '{source}' has no adapter to fold")


def resolve_adapter_dir(adapter_dir: Path, subfolder: str | None = None) -> Path:
    """The folder holding adapter_config.json: the adapter dir itself or its `subfolder`."""
    adapter_dir = Path(adapter_dir)
    for candidate in (adapter_dir, adapter_dir / subfolder if subfolder else None):
        if candidate is not None and (candidate / ADAPTER_CONFIG).exists():
            return candidate
    raise InputError(f"{adapter_dir}: no {ADAPTER_CONFIG} (nor under subfolder {subfolder!r}); expected a PEFT adapter")


def _adapter_metadata(adapter_dir: Path) -> dict:
    config = read_json(adapter_dir / ADAPTER_CONFIG)
    extra = {}
    for path in sorted(adapter_dir.glob("*.json")):
        if path.name != ADAPTER_CONFIG:
            try:
                extra[path.name] = read_json(path)
            except InputError:
                extra[path.name] = "unreadable JSON"
    return {"adapter_config": {k: config.get(k) for k in ADAPTER_CONFIG_KEYS}, "files": extra}


def _base_dtype(base_dir: Path) -> str:
    config = read_json(Path(base_dir) / "config.json")
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def fold_persona(
    base_dir: Path,
    adapter_dir: Path,
    out_dir: Path,
    model_name: str,
    persona: str,
    source_label: str,
    min_kl: float = 1e-6,
    gpus: int = 1,
) -> Composition:
    """Fold the persona adapter (at weight 1) into the base weights, check, save; return
    the composition. How the adapter itself was combined (e.g. DPO + 0.25 x SFT) is its
    own metadata, copied into fold.json. `gpus` > 1: the model split across that many
    GPUs (a model larger than one GPU), merged in its own dtype."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    info = model_info(base_dir)
    if not info:
        raise InputError(f"{base_dir}: no {MODEL_INFO}; expected a base model built by rule base_model")
    adapter_hash = weights_hash(adapter_dir)
    device = device_for_run()
    save_dtype = getattr(torch, _base_dtype(base_dir))
    # On a GPU merge in the model's own dtype; on a CPU in float32, then cast back.
    work_dtype = save_dtype if device == "cuda" else torch.float32
    check_safetensors(base_dir)
    check_safetensors(adapter_dir)
    if gpus > 1:
        from workflow_scripts.models.loading import split_across_gpus

        work_dtype = save_dtype
        model = AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=work_dtype, **split_across_gpus(gpus)
        ).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=work_dtype).to(device).eval()
    tokenizer = load_tokenizer(base_dir)
    base_logprobs = next_token_logprobs(model, tokenizer)

    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    merged = peft_model.merge_and_unload()
    if work_dtype != save_dtype:  # a split model is merged in its own dtype already
        merged = merged.to(save_dtype)
    merged.eval()
    folded_logprobs = next_token_logprobs(merged, tokenizer)
    divergence = logit_divergence(folded_logprobs, base_logprobs)
    log.info("%s/%s: logit divergence from base %s", model_name, persona, divergence)
    require_difference(divergence, f"fold of persona '{persona}' into {model_name}", min_kl=min_kl)

    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
        folded_hash = weights_hash(tmp)
        composition = Composition(model_name, info["identity"], info["weights_sha256"]).with_adapter(
            AdapterRef("persona", persona, adapter_hash, 1.0, source_label)
        )
        composition.checks = {
            "logit_divergence_vs_base": divergence,
            "probe_prompts": list(PROBE_PROMPTS),
            "min_kl": min_kl,
            "folded_weights_sha256": folded_hash,
            "merge": "peft merge_and_unload",
            "dtype": str(save_dtype).removeprefix("torch."),
        }
        write_composition(tmp, composition)
        write_json_atomic(
            tmp / MODEL_INFO,
            {
                "model": model_name,
                "identity": f"{info['identity']}+persona:{persona}",
                "source": "fold_persona",
                "weights_sha256": folded_hash,
            },
        )
        write_json_atomic(tmp / "fold.json", {"adapter_dir": str(adapter_dir), **_adapter_metadata(adapter_dir)})
    return composition
