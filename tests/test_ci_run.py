"""How the session's reduced study is run (tests/ci_run.py): through the SLURM test
cluster where it can start, locally otherwise, or as PERSONA_EM_CI_RUN says."""

from __future__ import annotations

import pytest

from tests.ci_run import MODE_ENV, chosen_mode

NO_CLUSTER = ["missing sbatch (install with tests/setup.d/30-slurm.sh)"]


def test_unset_runs_through_slurm_where_the_cluster_can_start(monkeypatch):
    monkeypatch.delenv(MODE_ENV, raising=False)
    assert chosen_mode([]) == "slurm"
    assert chosen_mode(NO_CLUSTER) == "local"


def test_the_variable_picks_local_even_with_a_cluster(monkeypatch):
    monkeypatch.setenv(MODE_ENV, " Local ")
    assert chosen_mode([]) == "local"
    monkeypatch.setenv(MODE_ENV, "slurm")
    assert chosen_mode([]) == "slurm"


def test_asking_for_slurm_without_the_cluster_says_why(monkeypatch):
    monkeypatch.setenv(MODE_ENV, "slurm")
    with pytest.raises(RuntimeError, match="missing sbatch"):
        chosen_mode(NO_CLUSTER)


def test_an_unknown_mode_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(MODE_ENV, "cluster")
    with pytest.raises(ValueError, match=f"{MODE_ENV}='cluster'"):
        chosen_mode([])
