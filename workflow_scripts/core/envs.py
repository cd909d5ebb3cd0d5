"""The software environments of envs/: each one's requirement list, the rules that run in
it, and the third-party modules those rules import (walked through the library with
`ast`, lazy imports inside functions included), so a missing requirement shows up
before a cluster job fails on an ImportError.

    python -m workflow_scripts.core.envs [--env train]   # check this interpreter's env

Run in a freshly built environment (envs/install.sbatch does), it says whether every
listed requirement is installed and every module its rules import is provided by a
listed requirement.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "envs"
PROJECT_PACKAGE = "workflow_scripts"
# Each environment: its conda file and its plain-venv twin (envs/README.md).
ENV_FILES = {
    "train": ("train.yaml", "requirements-train.txt"),
    "vllm": ("vllm.yaml", "requirements-vllm.txt"),
    "analysis": ("analysis.yaml", "requirements-analysis.txt"),
}
# The plain venvs: which environments' rules each one runs. The workflow's venv
# (requirements-train.txt) also runs Snakemake itself, so it holds the analysis rules'
# packages and the Snakefile's own imports as well.
VENV_RUNS = {"train": ("train", "analysis"), "vllm": ("vllm",), "analysis": ("analysis",)}
RUNS_SNAKEMAKE = {"train"}
# Imports a rule's environment does not need: the sampling job hands vLLM work to the
# vLLM venv's own python (workflow_scripts/engines/vllm_env.py) when vllm is missing.
HANDED_OFF = {"train": {"vllm"}}


@dataclass(frozen=True)
class Import:
    module: str  # top-level name
    optional: bool  # inside `try: ... except ImportError`


def requirement_name(line: str) -> str:
    """The normalised distribution name of one requirement line ('torch==2.13.0' -> 'torch')."""
    name = re.split(r"[\s<>=!~;\[@]", line.strip(), maxsplit=1)[0]
    return normalise(name)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(path: Path) -> list[str]:
    """Distribution names of a pip requirements file, following `-r other.txt`."""
    names: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            names += parse_requirements(path.parent / line.split(maxsplit=1)[1])
        elif line.startswith("-"):
            raise ValueError(
                f"{path}:{number}: option '{line}' is not supported in envs/ requirement files"
            )
        else:
            names.append(requirement_name(line))
    return names


def parse_conda_env(path: Path) -> list[str]:
    """Distribution names of a conda env file's pip section (conda packages: python, pip)."""
    import yaml

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for dep in spec.get("dependencies", []):
        if isinstance(dep, dict):
            names += [requirement_name(d) for d in dep.get("pip", [])]
        elif requirement_name(dep) not in {"python", "pip"}:
            names.append(requirement_name(dep))
    return names


@cache
def imports_of(path: Path) -> tuple[frozenset[Import], frozenset[str]]:
    """(third-party or standard imports, project modules) of one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    optional_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for inner in node.body:
                optional_nodes.update(id(n) for n in ast.walk(inner))
    found: set[Import] = set()
    project: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == PROJECT_PACKAGE:
                project.add(name)
            else:
                found.add(Import(name.split(".")[0], id(node) in optional_nodes))
    return frozenset(found), frozenset(project)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(k, ast.Name) and k.id in {"ImportError", "ModuleNotFoundError"} for k in kinds
    )


def module_file(name: str, repo: Path = REPO) -> Path | None:
    base = repo / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def rule_imports(rule: str, repo: Path = REPO) -> set[Import]:
    """Every non-project import reachable from a rule's entry script through the library."""
    return _walk([repo / PROJECT_PACKAGE / "rules" / f"{rule}.py"], repo)


def _walk(todo: list[Path], repo: Path) -> set[Import]:
    seen: set[Path] = set()
    found: set[Import] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        imports, project = imports_of(path)
        found |= imports
        for name in project:
            # A package import also runs its __init__; `from pkg import name` may be a module.
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                file = module_file(".".join(parts[:i]), repo)
                if file is not None:
                    todo.append(file)
    return found


def third_party(imports: Iterable[Import]) -> set[Import]:
    return {
        i for i in imports if i.module not in sys.stdlib_module_names and i.module != "__future__"
    }


def env_variables() -> dict[str, tuple[str, ...]]:
    """A rule's `conda:` may name a variable of rules/common.smk chosen by the config:
    every environment each one can take."""
    from workflow_scripts.judging.kinds import KINDS

    judge_envs = tuple(sorted({kind.env for kind in KINDS.values()}))
    return {
        "SAMPLING_ENV": ("train", "vllm"),
        "SELF_KNOWLEDGE_ENV": ("train", "vllm"),  # the battery runs on the sampling engine
        "JUDGE_ENV": judge_envs,
        "secondary_judge_env": judge_envs,  # a secondary judge may be of any kind
    }


def workflow_imports(repo: Path = REPO) -> set[Import]:
    """Imports of the Snakefile and rules/*.smk (parse time: the controller's venv),
    followed through the library."""
    found: set[Import] = set()
    todo: list[Path] = []
    for smk in [repo / "Snakefile", *sorted((repo / "rules").glob("*.smk"))]:
        for line in smk.read_text(encoding="utf-8").splitlines():
            if m := re.match(r"^\s*(?:from|import)\s+([\w.]+)", line):
                name = m.group(1)
                if name.split(".")[0] == PROJECT_PACKAGE:
                    if (file := module_file(name, repo)) is not None:
                        todo.append(file)
                else:
                    found.add(Import(name.split(".")[0], False))
    return found | _walk(todo, repo)


def rule_environments(rules_dir: Path = REPO / "rules") -> dict[str, tuple[str, ...]]:
    """Rule name -> the environments its `conda:` directive can name."""
    variables = env_variables()
    envs: dict[str, tuple[str, ...]] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        rule = None
        lines = smk.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if m := re.match(r"^(?:rule|checkpoint) (\w+):", line):
                rule = m.group(1)
            elif rule and line.strip() == "conda:":
                value = lines[i + 1].strip().strip("\"'")
                if m := re.fullmatch(r"\.\./envs/(\w+)\.yaml", value):
                    envs[rule] = (m.group(1),)
                elif value in variables:
                    envs[rule] = variables[value]
                else:
                    raise ValueError(
                        f"{smk}:{i + 2}: rule {rule}: conda: {value} names no envs/ file"
                    )
    return envs


def rules_of(env: str, rules_dir: Path = REPO / "rules") -> list[str]:
    return sorted(rule for rule, envs in rule_environments(rules_dir).items() if env in envs)


def distribution_of(module: str, mapping: dict[str, list[str]]) -> set[str]:
    return {normalise(d) for d in mapping.get(module, [])} | {normalise(module)}


def missing_modules(
    env: str,
    requirements: Sequence[str],
    mapping: dict[str, list[str]],
    conda: bool = False,
    repo: Path = REPO,
) -> dict[str, set[str]]:
    """Module -> importers (rules, or 'Snakefile'), for each third-party module that no
    requirement of environment `env` provides: its conda file runs that environment's
    rules (`conda=True`), its venv those of VENV_RUNS[env] (and Snakemake for the train venv).

    `mapping` is importlib.metadata.packages_distributions() of an environment that has
    the packages (module `yaml` -> distribution `pyyaml`). Optional imports (in a
    `try/except ImportError`) and modules the env hands off are not required."""
    listed = set(requirements)
    importers: dict[str, set[Import]] = {}
    for runs in (env,) if conda else VENV_RUNS[env]:
        for rule in rules_of(runs, repo / "rules"):
            importers[rule] = rule_imports(rule, repo)
    if env in RUNS_SNAKEMAKE and not conda:
        importers["Snakefile"] = workflow_imports(repo)
    missing: dict[str, set[str]] = {}
    for who, imports in importers.items():
        for imp in third_party(imports):
            if imp.optional or imp.module in HANDED_OFF.get(env, set()):
                continue
            if not distribution_of(imp.module, mapping) & listed:
                missing.setdefault(imp.module, set()).add(who)
    return missing


def not_installed(requirements: Iterable[str]) -> list[str]:
    """Requirements this interpreter has no distribution of."""
    absent = []
    for name in requirements:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    return absent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", choices=sorted(ENV_FILES), default="train")
    args = parser.parse_args(argv)
    requirements = parse_requirements(ENVS / ENV_FILES[args.env][1])
    problems = [f"not installed: {name}" for name in not_installed(requirements)]
    mapping = metadata.packages_distributions()
    for module, rules in sorted(missing_modules(args.env, requirements, mapping).items()):
        problems.append(
            f"module '{module}' (imported by {', '.join(sorted(rules))}) is provided by no "
            f"requirement of envs/{ENV_FILES[args.env][1]}"
        )
    for problem in problems:
        print(problem)
    print(
        f"{args.env}: {len(requirements)} requirements, {'OK' if not problems else f'{len(problems)} problems'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
