"""RESULTS.md from the tables, the answers table, and the statistics rules in the DAG."""

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.core.schema import CONTEXT_SCHEMA
from workflow_scripts.stats.answers import concat_answers
from workflow_scripts.stats.outputs import FIGURES, TABLES
from workflow_scripts.stats.report import render_results
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables, read_table, write_tables

REPO = Path(__file__).resolve().parents[1]
HYPOTHESES = {"H1": {"personas": ["sycophancy"], "direction": "lower"},
              "H2": {"personas": ["goodness"], "direction": "higher"}}


def settings(**statistics):
    block = {"bootstrap_resamples": 300, "hypotheses": HYPOTHESES, "medical_pair": None, **statistics}
    return settings_from_config(block, personas=["baseline", "goodness", "sycophancy"])


@pytest.fixture(scope="module")
def answers():
    grid = SyntheticGrid(persona_shift={"goodness": 9.0, "sycophancy": -9.0}, seed=2)
    return synthetic_answers(grid)


@pytest.fixture(scope="module")
def tables(answers, tmp_path_factory):
    """Through the CSV files, as the report rule reads them."""
    expected = [{"model": "model-a", "persona": p, "dataset": d}
                for p in ("baseline", "goodness", "sycophancy", "humor")
                for d in ("none", "risky_finance", "prudent_finance")]
    computed = compute_tables(answers, settings(), expected)
    folder = tmp_path_factory.mktemp("tables")
    paths = {name: folder / f"{name}.csv" for name in TABLES}
    write_tables(computed, paths)
    return {name: read_table(path) for name, path in paths.items()}


def test_results_report_has_every_table_and_generated_findings(tables):
    text = render_results(tables, settings(), [f"results/final/{f}.png" for f in FIGURES])
    for heading in ("## Findings", "## Data", "## Missing", "## Method", "## Alignment by persona",
                    "## Controls without EM", "## Hypotheses", "## Protection on the", "## Benign fine-tuning",
                    "## Persona check", "## Seed-to-seed SD", "## Design calculator", "## Prompt variants",
                    "## Level comparisons significant",
                    "## Tails", "## Dataset difficulty", "## Cross-model", "## Figures"):
        assert heading in text, heading
    summary = tables["hypothesis_summary"]
    n = summary.filter(pl.col("hypothesis") == "H2")["n_supported"][0]
    assert (f"**H2** (goodness higher than baseline: EM fine-tuning harms it less), model-a: protection "
            f"supported on {n} of 2 EM datasets") in text
    assert "not assessable (1 seed)" in text
    baseline = tables["personas"].filter(pl.col("persona") == "baseline").row(0, named=True)
    assert f"| baseline | {int(baseline['n_scored'])} | {baseline['mean']:.1f} |" in text
    assert "![fig8_cross_model](fig8_cross_model.png)" in text
    assert "_Needs two models with a shared EM dataset._" in text
    assert "## Bad vs good medical" not in text  # medical_pair is null


def test_results_report_lists_missing_conditions_and_scores(tables):
    text = render_results(tables, settings())
    missing = text[text.index("## Missing") : text.index("## Method")]
    assert "3 condition(s) of the configured grid are missing" in missing
    assert "| model-a | humor | no EM (control), risky_finance, prudent_finance | no answers |" in missing
    n_refusals = int(tables["missing_scores"].filter(pl.col("reason") == "REFUSAL")["n"].sum())
    assert f"| aligned | REFUSAL | {n_refusals} |" in missing


def test_results_report_includes_an_extra_section_when_given(tables):
    extra = "## Reproduction of the first study\n\nTable 1 reproduced within 0.1 points.\n"
    text = render_results(tables, settings(), extra=extra)
    assert text.rstrip().endswith("Table 1 reproduced within 0.1 points.")
    assert "Reproduction" not in render_results(tables, settings())


def test_answers_table_concatenates_judged_files_and_adds_judge_run(answers, tmp_path):
    judged = answers.drop("judge_run").with_columns(pl.lit("extra").alias("composition"))
    paths = []
    for (persona,), part in judged.group_by(["persona"], maintain_order=True):
        path = tmp_path / f"{persona}.parquet"
        part.write_parquet(path)
        paths.append(path)
    table = concat_answers(paths)
    assert table.height == answers.height
    assert table.columns == [*answers.columns, *CONTEXT_SCHEMA]
    assert set(table["judge_run"]) == {"1"}
    assert set(table["prompt_variant"]) == {"base"}
    assert set(table["composition"]) == {"extra"}  # kept: the base and adapter hashes


def test_answers_table_rejects_a_duplicated_answer_naming_both_files(answers, tmp_path):
    part = answers.filter(pl.col("persona") == "baseline")
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    part.write_parquet(first)
    part.head(3).write_parquet(second)
    with pytest.raises(InputError, match=r"a\.parquet and .*b\.parquet: answer \(model=model-a"):
        concat_answers([first, second])
    broken = tmp_path / "broken.parquet"
    part.drop("coherent").write_parquet(broken)
    with pytest.raises(InputError, match=r"broken\.parquet: missing columns coherent"):
        concat_answers([broken])


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1"]
    return subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def fresh_workdir(tmp_path) -> Path:
    """A working directory with no results: dry-runs then do not depend on what a run
    in the checkout has already built. Config paths are relative to it."""
    (tmp_path / "resources").symlink_to(REPO / "resources")
    (tmp_path / "config").symlink_to(REPO / "config")
    return tmp_path


def job_counts(dry_run_output: str) -> dict[str, int]:
    stats = dry_run_output[dry_run_output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


def test_a_figure_target_builds_only_what_it_needs(fresh_workdir):
    result = snakemake("-n", "results/final/fig8_cross_model.png", cwd=fresh_workdir)
    assert result.returncode == 0, result.stderr
    jobs = job_counts(result.stdout)
    assert jobs["figure"] == 1 and jobs["statistics"] == 1 and jobs["answers_table"] == 1
    assert "results_report" not in jobs
    result = snakemake("-n", "results/final/dist3_cdf.png", cwd=fresh_workdir)
    assert "statistics" not in job_counts(result.stdout)  # drawn from the answers alone


def test_rule_all_asks_for_every_table_figure_and_the_results(fresh_workdir):
    result = snakemake("-n", cwd=fresh_workdir)
    assert result.returncode == 0, result.stderr
    jobs = job_counts(result.stdout)
    assert jobs["figure"] == len(FIGURES)
    assert jobs["statistics"] == 1 and jobs["results_report"] == 1


DEGENERATE = {
    "baseline_only": dict(personas=("baseline",)),
    "controls_only": dict(datasets=()),
    "no_controls": dict(controls=False),
    "no_reference": dict(personas=("goodness", "sycophancy")),
    "one_question": dict(questions=1, answers_per_question=6),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_small_or_odd_grids_still_give_every_table_and_a_report(case, tmp_path):
    grid = SyntheticGrid(**{"questions": 3, "answers_per_question": 4, **DEGENERATE[case]})
    computed = compute_tables(synthetic_answers(grid), settings(medical_pair=["bad", "good"]))
    paths = {name: tmp_path / f"{name}.csv" for name in TABLES}
    write_tables(computed, paths)
    tables = {name: read_table(path) for name, path in paths.items()}
    assert set(tables) == set(TABLES)
    for name in ("comparisons", "significant", "hypotheses"):
        assert tables[name].schema.get("p", pl.Float64) == pl.Float64
    text = render_results(tables, settings(medical_pair=["bad", "good"]))
    assert "## Method" in text and "## Tails" in text


def test_report_pages_render_results_with_figures_and_tables_sortable(tables, tmp_path):
    from PIL import Image

    from workflow_scripts.stats.report_pages import findings_fragment, markdown_page, table_page

    figure = tmp_path / "fig1_alignment_by_persona.png"
    Image.new("RGB", (3000, 1500), "white").save(figure)
    text = render_results(tables, settings(), [str(figure)])
    page = markdown_page(text, [figure])
    assert "<h1>Results</h1>" in page and "<h2>Findings</h2>" in page
    assert page.count('src="data:image/png;base64,') == 1 and "<table>" in page
    assert "&lt;!--" not in page  # the findings' source comments stay comments
    front = findings_fragment(text)
    assert '<h1 id="results-title">Results</h1>' in front and "<li>" in front and "<!--" not in front
    path = tmp_path / "personas.csv"
    tables["personas"].write_csv(path)
    shown = table_page(path, "personas")
    assert shown.count("<tr>") == tables["personas"].height + 1
    assert "aria-sort" in shown and 'download="personas.csv"' in shown
