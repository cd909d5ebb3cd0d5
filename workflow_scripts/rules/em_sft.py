"""Rule em_sft: train one EM LoRA on the persona model (docs/methods.md, EM fine-tuning).

The start model is verified before training: for a persona other than the
baseline it must be a folded persona model whose composition.json lists that
persona's adapter and records a passed logit check against the base model, and
its weights must hash to what was checked. (Re-running the logit check would need
the base model in memory beside it; the weight hash proves the same thing, that
these are exactly the weights whose logits were shown to differ, at the cost of
reading them once.) The baseline starts from the base model itself, which must
carry no adapter.

Checkpoints go to a directory that is not a declared output: a killed job resumes
from the last one, and all are kept for phase-transition analysis.
"""

import json
import logging
from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.em.sft import train_em_adapter
from workflow_scripts.em.training import (
    EmTrainSettings,
)

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    settings = EmTrainSettings.from_params(smk.params.train)
    kl_reference = getattr(smk.input, "kl_reference", None)
    record = train_em_adapter(
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
    )
    log.info(
        "wrote %s: %s",
        smk.output.adapter,
        json.dumps({k: record[k] for k in ("kind", "seed", "global_steps")}),
    )


if "snakemake" in globals():
    main(snakemake)
