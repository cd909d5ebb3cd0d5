"""Rule em_dataset: fetch one EM dataset (URL, local file or encrypted archive
member), verify its checksum, validate every chat row, and write the training JSONL
plus a `.meta.json` that says where it came from and what was observed."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.em.dataset import build_dataset


def main(smk) -> None:
    start_job(smk)
    build_dataset(
        smk.wildcards.dataset,
        smk.params.dataset,
        smk.params.archives,
        Path(smk.output.data),
        Path(smk.output.meta),
    )


if "snakemake" in globals():
    main(snakemake)
