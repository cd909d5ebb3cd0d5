"""Rule h3_judge: judge the checkpoint answers of one persona and EM dataset with the
study's judge and its cache (judging.run.judge_samples)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.judging.run import judge_samples
from workflow_scripts.judging.settings import JudgeSettings


def main(smk) -> None:
    start_job(smk)
    judge_model = smk.input.get("judge_model") if hasattr(smk.input, "get") else None
    wc = smk.wildcards
    judge_samples(
        Path(smk.input.samples),
        Path(smk.input.questions),
        wc.dataset,
        JudgeSettings.from_config(dict(smk.params.judge)),
        Path(smk.output.judged),
        Path(smk.output.summary),
        writer=f"{wc.model}.h3.{wc.persona}.{wc.dataset}",
        judge_model_dir=Path(judge_model) if judge_model else None,
        server_log=Path(smk.log.server),
        handle_signals=True,
    )


if "snakemake" in globals():
    main(snakemake)
