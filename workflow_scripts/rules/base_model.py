"""Rule base_model: materialise the base model as a safetensors directory."""

import logging
from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.models.loading import ModelSource, build_base_model

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    settings = dict(smk.params.model)
    source = ModelSource.from_config(settings.pop("name"), settings)
    info = build_base_model(source, Path(smk.output.model))
    log.info("base model %s ready: %s", source.identity, info["weights_sha256"])


if "snakemake" in globals():
    main(snakemake)
