"""Rule `judge_secondary`: a secondary judge scores the answers of one primary judged
table, all or a stratified subsample (workflow_scripts.judging.secondary does the work)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.judging.secondary import judge_secondary
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.subsample import Subsample


def main(smk) -> None:
    start_job(smk)
    wc = smk.wildcards
    where = f"judges.secondary.{wc.judge}"
    settings = JudgeSettings.from_config(dict(smk.params.judge), f"{where}.judge")
    judge_model = smk.input.get("judge_model") if hasattr(smk.input, "get") else None
    judge_secondary(
        Path(smk.input.primary),
        Path(smk.input.questions),
        wc.dataset,
        settings,
        Subsample.from_config(dict(smk.params.subsample), f"{where}.subsample"),
        Path(smk.output.judged),
        Path(smk.output.summary),
        writer=f"{wc.model}.{wc.persona}.{wc.dataset}.{wc.judge}",
        judge_model_dir=Path(judge_model) if judge_model else None,
        server_log=Path(smk.log[0]).with_suffix(".server.log"),
        handle_signals=True,
    )


if "snakemake" in globals():
    main(snakemake)
