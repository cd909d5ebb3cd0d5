"""Rule self_knowledge_summary: the self-knowledge tables and figures from every persona
model's scored battery and the judged answers (workflow_scripts.self_knowledge.summary)."""

from workflow_scripts.core.job import start_job
from workflow_scripts.self_knowledge.outputs import FIGURES, TABLES
from workflow_scripts.self_knowledge.summary import summary_from_files


def main(smk) -> None:
    start_job(smk)
    summary_from_files(
        list(smk.input.scores),
        smk.input.answers,
        dict(smk.params.settings),
        {name: smk.output[name] for name in TABLES},
        {name: smk.output[f"{name}_figure"] for name in FIGURES},
        int(smk.params.dpi),
    )


if "snakemake" in globals():
    main(snakemake)
