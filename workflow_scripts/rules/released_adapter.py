"""Rule released_adapter: a released persona adapter (Open Character Training's
`maius/<model>-personas`, one subfolder per persona) fetched from the Hugging Face
Hub at a pinned revision into results/, where every later job reads it offline.

The rule carries `internet=1` (a serial/login node on clusters). Where the Hub is
unreachable (HF_HUB_OFFLINE=1, compute nodes) the Hugging Face cache is used, and
a missing entry is one clear error naming the repository and what to run."""

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
