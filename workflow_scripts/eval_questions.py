"""Evaluation questions: fetch (or read), verify the checksum, parse and keep the
evaluated ids, written as JSON for sampling and judging."""

import logging
from pathlib import Path

from workflow_scripts.io_utils import write_json_atomic
from workflow_scripts.questions import parse_questions
from workflow_scripts.sources import materialise_source

log = logging.getLogger(__name__)


def prepare_questions(questions_config: dict, out_file: Path, cache_dir: Path) -> dict:
    source = questions_config["source"]
    path, sha256 = materialise_source(source, cache_dir / "questions", what="questions.source")
    questions = parse_questions(path, questions_config.get("ids"))
    record = {
        "source": {k: v for k, v in source.items() if k != "allow_unpinned"},
        "file": str(path),
        "sha256": sha256,
        "questions": [q.to_dict() for q in questions],
    }
    write_json_atomic(out_file, record)
    log.info("%d questions from %s (sha256 %s)", len(questions), path, sha256)
    return record


if "snakemake" in globals():
    logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
    prepare_questions(
        snakemake.params.questions,
        Path(snakemake.output.questions),
        cache_dir=Path("results/downloads"),
    )
