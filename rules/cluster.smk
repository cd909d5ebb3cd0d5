# Cluster execution (docs/cluster.md). Included after the stages: it reads the resources the
# rules declare. Rules say what they need (`gpu=1`, `internet=1`); the profiles in
# profiles/ say where that runs.
#
# - A cluster job of a rule that does not declare `internet=1` runs with the Hugging
#   Face hub offline: compute nodes have no internet, and a missing local file should
#   fail at once rather than after network timeouts.
# - PERSONA_EM_INTERNET_RULES=local makes the rules that declare `internet=1` local
#   rules (run by the submitting Snakemake), for clusters without a partition that
#   reaches the internet; the default, `cluster`, submits them like every other rule.
# - A profile marks the rules it places on a partition without internet with the
#   resource `offline: 1`; a config in which such a rule would call a remote endpoint
#   (an API judge on a GPU rule) is refused here, before any job.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError


def declared_resource(rule, name):
    """A rule's constant resource value; 0 when absent or computed per job."""
    resource = rule.resources.get(name)
    if resource is None:
        return 0
    if hasattr(resource, "is_evaluable"):
        return 0 if resource.is_evaluable() else (resource.value or 0)
    return resource if isinstance(resource, int) else 0


INTERNET_RULES = sorted(
    r.name for r in workflow.rules if declared_resource(r, "internet")
)
HF_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")

_internet_placement = os.environ.get("PERSONA_EM_INTERNET_RULES", "cluster")
if _internet_placement not in ("cluster", "local"):
    raise WorkflowError(
        f"environment variable PERSONA_EM_INTERNET_RULES: expected 'cluster' or "
        f"'local', found {_internet_placement!r}"
    )
if _internet_placement == "local":
    workflow.localrules(*INTERNET_RULES)


# the checkout's library (common.smk puts it on sys.path; a workflow that includes only
# this file, like tests/slurm/workflow, may not)
_REPO = str(Path(workflow.current_basedir).parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
from workflow_scripts.core.placement import Placement, offline_remote_calls

_offline_calls = offline_remote_calls(
    [
        Placement(
            r.name,
            internet=bool(declared_resource(r, "internet")),
            offline=bool(declared_resource(r, "offline")),
            local=_internet_placement == "local",
        )
        for r in workflow.rules
    ],
    config.get("judge") or {},
)
if _offline_calls:
    raise WorkflowError(
        f"{', '.join(str(f) for f in workflow.configfiles) or 'config'}: "
        + "; ".join(_offline_calls)
        + ". Place these rules on a partition with internet (profiles/leonardo: "
        "INTERNET_RULES), or use a judge without one (judge.kind local or vllm_server)"
    )


def spawned_job_rules(argv):
    """Rules of the jobs a spawned Snakemake process runs (its --target-jobs, as
    `rule:wildcards`); empty for the main process. The DAG settings that hold them
    are not set yet while the Snakefile is parsed, so they are read from argv."""
    if "--target-jobs" not in argv:
        return set()
    specs = argv[argv.index("--target-jobs") + 1 :]
    rules = set()
    for spec in specs:
        if spec.startswith("-"):
            break
        rules.add(spec.split(":", 1)[0])
    return rules


_job_rules = spawned_job_rules(sys.argv) if not workflow.is_main_process else set()
if _job_rules and not _job_rules & set(INTERNET_RULES):
    for _var in HF_OFFLINE_VARS:
        os.environ.setdefault(_var, "1")
