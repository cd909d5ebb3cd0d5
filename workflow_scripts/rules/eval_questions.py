"""Rule eval_questions: fetch (or read) the evaluation questions, verify the checksum,
parse them and keep the evaluated ids, written as JSON for sampling and judging."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.sampling.questions import prepare_questions


def main(smk) -> None:
    start_job(smk)
    prepare_questions(
        smk.params.questions, Path(smk.output.questions), cache_dir=Path("results/downloads")
    )


if "snakemake" in globals():
    main(snakemake)
