"""Evaluation questions: fetch (or read), verify the checksum, parse and keep the
evaluated ids, written as JSON for sampling and judging."""

import logging
from pathlib import Path

from workflow_scripts.sampling.questions import prepare_questions

if "snakemake" in globals():
    logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
    prepare_questions(
        snakemake.params.questions,
        Path(snakemake.output.questions),
        cache_dir=Path("results/downloads"),
    )
