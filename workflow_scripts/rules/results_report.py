"""results/final/RESULTS.md (rule `results_report`): the tables, findings written from
the numbers (never by hand), the method, what is missing, and the figures; plus an
optional extra Markdown section (the first study's reproduction) when given, the
H4 and H3 sections when their tests are inputs, the judges section with secondary
judges, and the self-knowledge section when its tables are inputs."""

import logging
from pathlib import Path

from workflow_scripts.core.io_utils import write_text_atomic
from workflow_scripts.core.job import start_job
from workflow_scripts.h3.run import read_h3_tests
from workflow_scripts.h4.tables import read_h4_tests
from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.report import h3_section, h4_section, read_tables, render_results
from workflow_scripts.stats.robustness import judges_section
from workflow_scripts.stats.settings import settings_from_dict

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    settings = settings_from_dict(smk.params.settings)
    tables = read_tables({name: smk.input[name] for name in TABLES})
    extra_path = smk.input.get("extra") if hasattr(smk.input, "get") else None
    extra = Path(extra_path).read_text(encoding="utf-8") if extra_path else None
    findings_path = smk.input.get("extra_findings") if hasattr(smk.input, "get") else None
    extra_findings = (
        Path(findings_path).read_text(encoding="utf-8").splitlines() if findings_path else []
    )
    h4_path = smk.input.get("h4_tests") if hasattr(smk.input, "get") else None
    if h4_path:  # the H4 section follows any other extra section
        extra = "\n\n".join(part for part in (extra, h4_section(read_h4_tests(h4_path))) if part)
    h3_path = smk.input.get("h3_tests") if hasattr(smk.input, "get") else None
    if h3_path:  # the H3 section follows the H4 section
        extra = "\n\n".join(part for part in (extra, h3_section(read_h3_tests(h3_path))) if part)
    judges_path = smk.input.get("judges") if hasattr(smk.input, "get") else None
    if judges_path:  # secondary judges: agreement and the verdicts under every judge
        extra = "\n\n".join(part for part in (extra, judges_section(judges_path, list(smk.input.agreement))) if part)
    sk_tests = smk.input.get("sk_self_knowledge_tests") if hasattr(smk.input, "get") else None
    if sk_tests:  # the self-knowledge section follows the other hypotheses' sections
        from workflow_scripts.self_knowledge.report import section_from_files

        section = section_from_files(
            smk.input.sk_self_knowledge_conditions, smk.input.sk_self_knowledge_classes, sk_tests
        )
        extra = "\n\n".join(part for part in (extra, section) if part)
    text = render_results(tables, settings, list(smk.input.figures), extra, extra_findings)
    write_text_atomic(smk.output.results, text)
    log.info("RESULTS.md: %d lines", text.count("\n"))


if "snakemake" in globals():
    main(snakemake)
