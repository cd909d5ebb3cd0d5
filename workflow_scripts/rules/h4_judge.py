"""Rule h4_judge: judge steered or ablated answers with the study's judge and its
cache (workflow_scripts.h4.judge.judge_h4_samples over judging.run.judge_samples)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.h4.judge import judge_h4_samples
from workflow_scripts.judging.settings import JudgeSettings


def main(smk) -> None:
    start_job(smk)
    judge_model = smk.input.get("judge_model") if hasattr(smk.input, "get") else None
    judge_h4_samples(
        Path(smk.input.samples),
        Path(smk.input.questions),
        smk.params.dataset,
        JudgeSettings.from_config(dict(smk.params.judge)),
        Path(smk.output.judged),
        Path(smk.output.summary),
        writer=f"{smk.wildcards.model}.h4.{smk.wildcards.h4run.replace('/', '.')}",
        judge_model_dir=Path(judge_model) if judge_model else None,
        server_log=Path(smk.log.server),
        handle_signals=True,
    )


if "snakemake" in globals():
    main(snakemake)
