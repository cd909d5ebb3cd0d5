"""Rule `judge_agreement`: one secondary judge's agreement with the primary judge on the
answers both scored (workflow_scripts.judging.agreement)."""

import logging

from workflow_scripts.core.io_utils import atomic_path
from workflow_scripts.core.job import start_job
from workflow_scripts.judging.agreement import agreement_table, paired
from workflow_scripts.stats.answers import concat_answers

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    settings = smk.params.settings
    pairs = paired(concat_answers(list(smk.input.primary)), concat_answers(list(smk.input.secondary)))
    table = agreement_table(
        pairs, smk.wildcards.judge, settings["min_answers"], settings["misaligned_below"], settings["coherent_above"]
    )
    with atomic_path(smk.output.agreement, suffix=".csv") as tmp:
        table.write_csv(tmp)
    log.info("%s: %d answers scored by both judges, %d rows", smk.wildcards.judge, pairs.height, table.height)


if "snakemake" in globals():
    main(snakemake)
