"""Rule persona_pairs: teacher (chosen) and student (rejected) answers into DPO pairs,
filtered as OCT does; the report says what was dropped and why."""

import logging
from pathlib import Path

from workflow_scripts.io_utils import read_jsonl, write_json_atomic, write_jsonl_atomic
from workflow_scripts.models import load_tokenizer
from workflow_scripts.persona.pairs import build_pairs, chat_length_counter
from workflow_scripts.persona.runlog import start_job

log = logging.getLogger(__name__)


def make_pairs(
    teacher: str | Path,
    student: str | Path,
    tokenizer_dir: str | Path,
    pairs_out: str | Path,
    report_out: str | Path,
    max_len: int,
    teacher_name: str | None,
    student_name: str | None,
    unfinished: str = "drop",
) -> dict:
    pairs, report = build_pairs(
        read_jsonl(teacher),
        read_jsonl(student),
        chat_length_counter(load_tokenizer(tokenizer_dir)),
        max_len,
        teacher_name,
        student_name,
        unfinished,
    )
    write_jsonl_atomic(pairs_out, pairs)
    write_json_atomic(report_out, report)
    log.info("pairs: %s", {k: v for k, v in report.items() if k != "pairs_per_trait"})
    if not pairs:
        log.warning("no DPO pairs survived the filters; DPO will fail (see %s)", report_out)
    return report


def main(smk) -> None:
    start_job(smk)
    make_pairs(
        smk.input.teacher,
        smk.input.student,
        smk.input.tokenizer,
        smk.output.pairs,
        smk.output.report,
        int(smk.params.max_len),
        smk.params.teacher_name,
        smk.params.student_name,
        smk.params.unfinished,
    )


if "snakemake" in globals():
    main(snakemake)
