"""Rule persona_pairs: teacher (chosen) and student (rejected) answers into DPO pairs,
filtered as OCT does; the report says what was dropped and why."""

from workflow_scripts.core.job import start_job
from workflow_scripts.persona.pairs import make_pairs


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
