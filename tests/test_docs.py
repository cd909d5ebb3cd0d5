"""docs/architecture.md follows the code: it names every rule of the workflow, and
every repository path it writes in backticks exists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
REPOSITORY_PREFIXES = ("workflow_scripts/", "rules/", "config/")


def workflow_rules() -> set[str]:
    """Rule names declared in rules/*.smk and the Snakefile."""
    files = [*(REPO / "rules").glob("*.smk"), REPO / "Snakefile"]
    return {name for f in files for name in re.findall(r"^rule (\w+):", f.read_text(), flags=re.M)}


def backticked_paths(text: str) -> set[str]:
    """Backticked spans that look like repository paths (placeholders excluded)."""
    spans = re.findall(r"`([^`\s]+)`", text)
    return {
        span.rstrip("/")
        for span in spans
        if span.startswith(REPOSITORY_PREFIXES) and not re.search(r"[<>{}*]", span)
    }


def test_rules_are_found():
    rules = workflow_rules()
    assert {"all", "base_model", "em_sft", "judge", "statistics"} <= rules


def test_every_rule_is_named_in_the_architecture_doc():
    text = ARCHITECTURE.read_text()
    missing = sorted(r for r in workflow_rules() - {"all"} if f"`{r}`" not in text)
    assert missing == []


def test_every_repository_path_in_the_architecture_doc_exists():
    paths = backticked_paths(ARCHITECTURE.read_text())
    assert "workflow_scripts/core/job.py" in paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == []


def test_path_check_skips_placeholders_and_finds_a_wrong_path():
    text = "`rules/<stage>.smk` `workflow_scripts/rules/{rule}.py` `config/nope.yaml` `results/final/`"
    assert backticked_paths(text) == {"config/nope.yaml"}
