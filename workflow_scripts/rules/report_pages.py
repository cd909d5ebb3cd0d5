"""The pages of `snakemake --report` (rule `report_pages`): RESULTS.html with the figures
embedded, the findings for the report's front page, and one sortable HTML page per table
(the statistics tables, and the first study's when importing)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.stats.report_pages import write_report_pages


def main(smk) -> None:
    start_job(smk)
    names = list(smk.params.tables)
    write_report_pages(
        results_md=Path(smk.input.results),
        figures=[Path(f) for f in smk.input.figures],
        tables={name: Path(smk.input[name]) for name in names},
        results_html=Path(smk.output.results),
        findings_html=Path(smk.output.findings),
        table_pages={name: Path(smk.output[name]) for name in names},
    )


if "snakemake" in globals():
    main(snakemake)
