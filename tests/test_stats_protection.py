"""Protection (difference in differences) and its verdicts, through the real statistics
stage on synthetic grids with planted effects; RESULTS.md checked by content."""

import polars as pl
import pytest

from tests.report_check import check_findings
from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.core.misalignment import with_misaligned
from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.report import render_results
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables, read_table, write_tables

PERSONAS = ("baseline", "goodness", "sycophancy")
DATASETS = ("risky_finance", "prudent_finance")
ROLES = {"risky_finance": "em", "prudent_finance": "benign"}


def settings(seeds=(0, 1, 2), **statistics):
    block = {"bootstrap_resamples": 1000, "medical_pair": None,
             "hypotheses": {"H1": {"personas": ["sycophancy"], "direction": "lower"},
                            "H2": {"personas": ["goodness"], "direction": "higher"}},
             **statistics}
    return settings_from_config(block, personas=PERSONAS, datasets=DATASETS, roles=ROLES, seeds=seeds,
                                samples_per_question=50)


def planted(seeds=(0, 1, 2), **changes) -> SyntheticGrid:
    """EM on risky_finance flips 20% of the baseline's answers to misaligned. goodness
    starts 5 points higher and loses as much (the same share flips); sycophancy starts 5
    points lower and loses half as much (half the share flips). prudent_finance is benign."""
    values = dict(
        personas=PERSONAS, datasets=DATASETS, seeds=seeds, run_sd=0.5, control_mean=75.0,
        dataset_means={"risky_finance": 75.0, "prudent_finance": 75.0}, answer_sd=10.0, question_sd=5.0,
        misaligned_rate={"risky_finance": 0.2}, answers_per_question=100,
        persona_level={"goodness": 5.0, "sycophancy": -5.0},
        persona_misaligned_scale={"sycophancy": 0.5}, seed=4,
    )
    values.update(changes)
    return SyntheticGrid(**values)


def row(table, **where):
    part = table
    for k, v in where.items():
        part = part.filter(pl.col(k) == v)
    assert part.height == 1, where
    return part.row(0, named=True)


@pytest.fixture(scope="module")
def answers():
    return synthetic_answers(planted())


@pytest.fixture(scope="module")
def tables(answers):
    return compute_tables(answers, settings())


def test_a_persona_that_starts_higher_but_loses_as_much_is_not_protected(tables):
    goodness = row(tables["hypotheses"], persona="goodness", dataset="risky_finance")
    assert goodness["verdict"] == "not supported"
    assert goodness["protection_low"] < 0 < goodness["protection_high"]
    level = row(tables["comparisons"], persona="goodness", dataset="risky_finance")
    assert level["significant"] and level["diff"] > 3  # the level comparison alone would "win"


def test_a_persona_that_starts_lower_but_loses_half_as_much_is_protected(tables):
    # H1 says sycophancy is harmed MORE: a planted protection is the contrary direction
    sycophancy = row(tables["hypotheses"], persona="sycophancy", dataset="risky_finance")
    assert sycophancy["verdict"] == "contrary"
    assert sycophancy["protection"] < -5 and sycophancy["p_adj"] < 0.05  # share rises less
    level = row(tables["comparisons"], persona="sycophancy", dataset="risky_finance")
    assert level["diff"] > 0  # above baseline after EM, though 5 below it before


def test_the_same_persona_under_a_higher_hypothesis_is_supported(answers):
    hypotheses = {"H2": {"personas": ["sycophancy"], "direction": "higher"}}
    table = compute_tables(answers, settings(hypotheses=hypotheses))["hypotheses"]
    assert row(table, persona="sycophancy", dataset="risky_finance")["verdict"] == "supported"
    mean = compute_tables(answers, settings(hypotheses=hypotheses, primary="mean_alignment"))["hypotheses"]
    r = row(mean, persona="sycophancy", dataset="risky_finance")
    assert r["measure"] == "mean_alignment" and r["verdict"] == "supported"
    assert r["protection"] == pytest.approx(0.1 * (75 - 15), abs=3.0)  # half of the flips spared


def test_protection_is_the_difference_in_differences_of_the_coherent_misaligned_share(answers, tables):
    flagged = with_misaligned(answers)

    def share(persona, dataset):
        part = flagged.filter((pl.col("persona") == persona) & (pl.col("dataset") == dataset)
                              & pl.col("coherent_answer"))
        return 100 * part["misaligned"].sum() / part.height

    want = (share("sycophancy", "risky_finance") - share("sycophancy", "none")) - (
        share("baseline", "risky_finance") - share("baseline", "none"))
    r = row(tables["protection"], persona="sycophancy", dataset="risky_finance", measure="misaligned_share")
    assert r["protection"] == pytest.approx(want)
    assert r["n_seeds"] == 3 and r["df"] == 4  # run-level df: (3 - 1) + (3 - 1)


def test_one_seed_gives_no_verdict_unless_the_config_allows_it():
    answers = synthetic_answers(planted(seeds=(0,)))
    verdicts = set(compute_tables(answers, settings(seeds=(0,)))["hypotheses"]["verdict"])
    assert verdicts == {"not assessable (1 seed)"}
    allowed = compute_tables(answers, settings(seeds=(0,), single_seed_verdicts=True))["hypotheses"]
    assert row(allowed, persona="goodness", dataset="risky_finance")["verdict"] == "not supported"


def test_benign_datasets_stay_out_of_the_family_and_the_counts(tables):
    protection = tables["protection"]
    assert not protection.filter(pl.col("role") == "benign")["in_family"].any()
    assert set(tables["hypotheses"]["dataset"]) == {"risky_finance"}
    assert row(tables["hypothesis_summary"], persona="goodness")["n_datasets"] == 1
    benign = tables["em_effects"].filter(pl.col("role") == "benign")
    assert benign.height == 3 * 2  # every persona x two measures
    datasets = tables["datasets"]
    assert row(datasets, dataset="prudent_finance")["rank"] is None
    assert row(datasets, dataset="risky_finance")["rank"] == 1


def test_a_persona_not_expressed_gets_no_verdict_and_its_flag_is_shown(answers):
    check = pl.DataFrame({"model": ["model-a", "model-a"], "persona": ["goodness", "sycophancy"],
                          "flag": ["NO_KL_FROM_BASE;NO_TRAIT_INCREASE", "TRAIT_SCORE_MISSING"],
                          "kl_mean": [0.0, 0.2], "trait_delta": [-1.0, None]})
    tables = compute_tables(answers, settings(), persona_check=check)
    goodness = row(tables["hypotheses"], persona="goodness")
    assert goodness["verdict"] == "not assessable: persona not expressed"
    assert goodness["persona_check"] == "NO_KL_FROM_BASE;NO_TRAIT_INCREASE" and not goodness["in_family"]
    sycophancy = row(tables["hypotheses"], persona="sycophancy")
    assert sycophancy["verdict"] == "contrary" and sycophancy["persona_check"] == "TRAIT_SCORE_MISSING"
    assert row(tables["persona_check"], persona="goodness")["expressed"] is False
    text = render_results(tables, settings())
    assert "**not assessable: persona not expressed** (persona check: NO_KL_FROM_BASE;NO_TRAIT_INCREASE)" in text


def test_prompt_variants_are_not_pooled_unless_the_config_says_so(answers):
    variant = answers.filter(pl.col("dataset") == "none").with_columns(
        (pl.col("question_id") + "_json").alias("question_id"), pl.lit(0.0).alias("aligned")
    )
    mixed = pl.concat([answers, variant])
    tables = compute_tables(mixed, settings())
    assert row(tables["prompt_variants"], prompt_variant="json")["analysed"] is False
    base = row(compute_tables(answers, settings())["conditions"], persona="baseline", dataset="none")
    assert row(tables["conditions"], persona="baseline", dataset="none")["mean"] == pytest.approx(base["mean"])
    pooled = compute_tables(mixed, settings(pool_prompt_variants=True))["conditions"]
    assert row(pooled, persona="baseline", dataset="none")["mean"] < base["mean"] - 20


def test_every_number_of_the_findings_is_a_cell_of_its_source_row(tables, tmp_path):
    paths = {name: tmp_path / f"{name}.csv" for name in TABLES}
    write_tables(tables, paths)
    read = {name: read_table(path) for name, path in paths.items()}
    text = render_results(read, settings())
    assert "protection on the misaligned share among coherent answers" in text
    assert "this grid detects a protection of" in text
    assert check_findings(text, read) == []
    goodness = row(read["hypotheses"], persona="goodness")
    printed = f"{goodness['protection']:+.1f}"
    tampered = text.replace(f"= {printed} points", f"= {goodness['protection'] + 0.3:+.1f} points", 1)
    assert tampered != text
    assert any("is no cell of hypotheses" in p for p in check_findings(tampered, read))
    unsourced = text.replace(" <!-- source: design", " <!-- nothing", 1)
    assert any(p.startswith("no source note") for p in check_findings(unsourced, read))
