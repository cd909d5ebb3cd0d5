"""Rule fold_persona: the persona adapter merged into the base model, with the logit
check against the base (workflow_scripts/persona/fold.py)."""

from pathlib import Path
from typing import Any

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus
from workflow_scripts.persona.fold import adapter_source_label, fold_persona, resolve_adapter_dir


def main(smk: Any) -> None:
    start_job(smk)
    entry = smk.params.persona
    model = smk.wildcards.model
    subfolder = (entry.get("released") or {}).get(model, {}).get("subfolder")
    fold_persona(
        base_dir=Path(smk.input.model),
        adapter_dir=resolve_adapter_dir(Path(smk.input.adapter), subfolder),
        out_dir=Path(smk.output.model),
        model_name=model,
        persona=smk.wildcards.persona,
        source_label=adapter_source_label(entry, model),
        gpus=job_gpus(smk),  # a model of several GPUs is split across them
    )


if "snakemake" in globals():
    main(snakemake)
