"""Rule `judge`: judge one (model, persona, dataset) with the configured judge
(workflow_scripts.judging.run.judge_samples does the work)."""

import logging
from pathlib import Path

from workflow_scripts.judging.run import judge_samples
from workflow_scripts.judging.settings import JudgeSettings


def main(smk) -> None:
    logging.basicConfig(
        filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    wc = smk.wildcards
    settings = JudgeSettings.from_config(dict(smk.params.judge))
    if settings.kind == "local":  # no more torch threads than the job's cores
        import torch

        torch.set_num_threads(max(1, int(smk.threads)))
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
