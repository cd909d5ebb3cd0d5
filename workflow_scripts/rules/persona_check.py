"""Rule persona_check: per model, is each persona there? The probe's KL of each persona
model from the base model, and a trait-expression score (the configured judge) of the
probe's answers, persona vs base. Runs with the judge's resources (a remote judge: where
the internet is). Flagged personas are warned about loudly; the workflow continues."""

from workflow_scripts.core.job import start_job
from workflow_scripts.persona.check import run_check


def main(smk) -> None:
    start_job(smk)
    run_check(
        smk.wildcards.model,
        smk.input.probes,
        smk.params.traits,
        smk.params.settings,
        smk.params.judge,
        smk.input.get("judge_model"),
        smk.output.table,
        smk.output.answers,
        smk.log[0],
    )


if "snakemake" in globals():
    main(snakemake)
