"""Rule base_model: materialise the base model as a safetensors directory."""

import logging
from pathlib import Path

from workflow_scripts.models.loading import ModelSource, build_base_model

log = logging.getLogger(__name__)


def main(model_settings: dict, out_dir: Path) -> dict:
    settings = dict(model_settings)
    source = ModelSource.from_config(settings.pop("name"), settings)
    info = build_base_model(source, out_dir)
    log.info("base model %s ready: %s", source.identity, info["weights_sha256"])
    return info


if "snakemake" in globals():
    logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
    main(snakemake.params.model, Path(snakemake.output.model))
