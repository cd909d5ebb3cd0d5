"""The code shows the pipeline: one entry script per rule, named after it, over a
library grouped by stage; entry scripts import the library only, and nothing imports
an entry script (tests aside)."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "workflow_scripts"
ENTRIES = LIBRARY / "rules"
STAGE_FILES = sorted(p for p in (REPO / "rules").glob("*.smk") if p.stem not in ("common", "cluster"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def imports_an_entry(path: Path) -> list[str]:
    return sorted(m for m in imported_modules(path) if m.startswith("workflow_scripts.rules"))


def rule_scripts() -> dict[str, str]:
    """rule name -> its script path, from the rule files."""
    scripts = {}
    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            script = re.search(r'script:\s*\n\s*"\.\./(workflow_scripts/[\w/]+\.py)"', block)
            if script:
                scripts[name] = script.group(1)
    return scripts


def test_the_library_and_the_benchmarks_never_import_a_rule_script():
    offenders = {
        str(path.relative_to(REPO)): imports_an_entry(path)
        for path in [*LIBRARY.rglob("*.py"), *(REPO / "benchmarks").glob("*.py")]
        if imports_an_entry(path)
    }
    assert offenders == {}


def test_the_check_finds_an_import_of_a_rule_script(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from workflow_scripts.rules import judge\nimport workflow_scripts.rules.em_sft\n")
    assert imports_an_entry(module) == [
        "workflow_scripts.rules",
        "workflow_scripts.rules.em_sft",
        "workflow_scripts.rules.judge",
    ]


def test_every_rule_runs_the_entry_script_named_after_it_and_every_entry_is_a_rule():
    scripts = rule_scripts()
    assert scripts, "no rule with a script found"
    assert {rule: f"workflow_scripts/rules/{rule}.py" for rule in scripts} == scripts
    entries = {p.stem for p in ENTRIES.glob("*.py") if p.stem != "__init__"}
    assert entries == set(scripts)


def test_entry_scripts_are_thin_and_start_the_job_the_same_way():
    for path in ENTRIES.glob("*.py"):
        if path.stem == "__init__":
            continue
        text = path.read_text()
        tree = ast.parse(text)
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert functions == ["main"], f"{path.name}: defines {functions}"
        assert "start_job(smk" in text, f"{path.name}: does not call start_job"
        assert 'if "snakemake" in globals():\n    main(snakemake)' in text, path.name


def test_each_stage_file_has_a_library_package_of_the_same_name():
    stages = {p.stem for p in STAGE_FILES}
    packages = {p.parent.name for p in LIBRARY.glob("*/__init__.py")}
    assert stages <= packages, sorted(stages - packages)


def test_rule_benchmarks_and_logs_go_to_the_ignored_logs_folder():
    for smk in (REPO / "rules").glob("*.smk"):
        for path in re.findall(r'benchmark:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert path.startswith("logs/benchmarks/"), f"{smk.name}: {path}"
