"""Rule released_adapter: fetch a released persona adapter at a pinned revision
(workflow_scripts/persona/released.py)."""

import logging

from workflow_scripts.core.job import start_job
from workflow_scripts.persona.released import fetch_released_adapter

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    spec = smk.params.released
    record = fetch_released_adapter(
        spec["repo"], spec.get("subfolder"), spec.get("revision", "main"), smk.output.adapter
    )
    log.info("released adapter: %s", record)


if "snakemake" in globals():
    main(snakemake)
