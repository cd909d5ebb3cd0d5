"""Rule em_sft: one EM LoRA on the persona model, verified start model, resumable
checkpoints (workflow_scripts/em/sft.py)."""

import json
import logging
from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus, run_on_gpus
from workflow_scripts.em.sft import train_em_adapter
from workflow_scripts.em.training import (
    EmTrainSettings,
)

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    settings = EmTrainSettings.from_params(smk.params.train)
    kl_reference = getattr(smk.input, "kl_reference", None)
    # A model of several GPUs: one training process per GPU of the job (core/launch.py)
    kwargs = dict(
        model_dir=Path(smk.input.model),
        dataset=Path(smk.input.data),
        out_dir=Path(smk.output.adapter),
        checkpoints_dir=Path(smk.params.checkpoints),
        settings=settings,
        persona=smk.wildcards.persona,
        dataset_name=smk.wildcards.dataset,
        has_persona_adapter=smk.params.has_persona_adapter,
        kl_reference=Path(kl_reference) if kl_reference else None,
        kl_reference_name=smk.params.kl_reference_name,
        analysis_dir=Path(smk.output.analysis),
    )
    record = run_on_gpus(train_em_adapter, kwargs, job_gpus(smk))
    log.info(
        "wrote %s: %s",
        smk.output.adapter,
        json.dumps({k: record[k] for k in ("kind", "seed", "global_steps")}),
    )


if "snakemake" in globals():
    main(snakemake)
