"""Rule `judge`: judge one (model, persona, dataset) with the configured judge
(workflow_scripts.judging.run.judge_samples does the work)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.judging.run import judge_samples
from workflow_scripts.judging.settings import JudgeSettings


def main(smk) -> None:
    start_job(smk)
    wc = smk.wildcards
    settings = JudgeSettings.from_config(dict(smk.params.judge))
    judge_model = smk.input.get("judge_model") if hasattr(smk.input, "get") else None
    judge_samples(
        Path(smk.input.samples),
        Path(smk.input.questions),
        wc.dataset,
        settings,
        Path(smk.output.judged),
        Path(smk.output.summary),
        writer=f"{wc.model}.{wc.persona}.{wc.dataset}",
        judge_model_dir=Path(judge_model) if judge_model else None,
        server_log=Path(smk.log[0]).with_suffix(".server.log"),
        handle_signals=True,
    )


if "snakemake" in globals():
    main(snakemake)
