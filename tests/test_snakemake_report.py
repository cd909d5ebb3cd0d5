"""`snakemake --report` on a finished workflow, for the offline default and for the
re-analysis of the first study: RESULTS.md and every table are inside the report as HTML
pages (not downloads), in the categories of the study; its rule graph is
`snakemake --rulegraph`'s; and a browser shows it (headless Chromium screenshots).

The offline default's results are made from synthetic answers by the statistics, figure
and report rules only (upstream rules are not allowed to run); the import runs for real
on the first study's test fixture."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.stats.outputs import (
    FIGURES,
    FIRST_STUDY,
    FIRST_STUDY_TABLES,
    REPORT_CATEGORIES,
    RESULTS_CATEGORY,
    TABLES,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "first_study_fixture" / "good"
WORKFLOW = ("Snakefile", "rules", "config", "report", "resources", "workflow_scripts", "envs")
QUICK = {"bootstrap_resamples": 200, "figure_dpi": 50}


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@dataclass
class Built:
    root: Path
    config: list[str]
    html: str

    def var(self, name: str, variable: str | None = None):
        """The JSON of the report's <script id=name> (var `variable`, default: the id)."""
        variable = variable or name.replace("-", "_")
        match = re.search(rf'<script id="{name}">\s*var {variable} = (.*?);\s*</script>', self.html, re.S)
        assert match, f"no {name} payload in the report"
        return json.loads(match.group(1))

    @property
    def results(self) -> dict:
        return self.var("results")

    def page(self, path: str) -> str:
        uri = self.results[path]["data_uri"]
        return base64.b64decode(uri.split("base64,", 1)[1]).decode("utf-8")


def copy_workflow(root: Path) -> None:
    for item in WORKFLOW:
        source = REPO / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / item)


def build_report(root: Path, config: list[str], *build: str) -> Built:
    run = snakemake(root, *config, *build)
    assert run.returncode == 0, run.stderr[-3000:]
    run = snakemake(root, *config, "--report", "report.html")
    assert run.returncode == 0, run.stderr[-3000:]
    return Built(root, config, (root / "report.html").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("offline")
    copy_workflow(root)
    grid = SyntheticGrid(models=("smollm2-135m",), questions=4, answers_per_question=4)
    (root / "results" / "final").mkdir(parents=True)
    synthetic_answers(grid).write_parquet(root / "results" / "final" / "answers.parquet")
    check = pl.DataFrame({"model": "smollm2-135m", "persona": ["goodness", "sycophancy"], "flag": "OK",
                          "kl_mean": [0.2, 0.3], "trait_delta": [1.5, 2.0]})
    (root / "results" / "smollm2-135m").mkdir()
    check.write_csv(root / "results" / "smollm2-135m" / "persona_check.tsv", separator="\t")
    quick = root / "quick.yaml"
    # the report of the main evaluation: the stages with their own tables (H3, H4, the
    # self-knowledge battery) are off, their sections are checked in tests/test_e2e.py
    quick.write_text(yaml.safe_dump({"statistics": {**QUICK, "medical_pair": None,
                                                    "hypotheses": {"H1": {"personas": ["sycophancy"],
                                                                          "direction": "lower"}}},
                                     **{stage: {"enabled": False} for stage in ("h3", "h4", "self_knowledge")}}))
    config = ["--configfile", "config/offline.yaml", str(quick)]
    allowed = ["--allowed-rules", "statistics", "figure", "results_report", "report_pages"]
    return build_report(root, config, *allowed, "--", "results/final/report/RESULTS.html")


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("import")
    copy_workflow(root)
    config = yaml.safe_load((REPO / "config" / "first_study.yaml").read_text())
    config["first_study"].update(archive=None, directory=str(FIXTURE))
    config["statistics"].update(QUICK)
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return build_report(root, ["--configfile", "study.yaml"])


class Tables(HTMLParser):
    """The rows of every <table> of a page, as text."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def same_cell(shown: str, value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return shown == ""
    if isinstance(value, bool):
        return shown == str(value).lower()
    if isinstance(value, int | float):
        return np.isclose(float(shown), float(value), rtol=1e-3, atol=1e-3)
    return shown == str(value)


def check_table_page(built: Built, name: str, source: Path) -> None:
    path = f"results/final/report/tables/{name}.html"
    entry = built.results[path]
    assert entry["mime_type"] == "text/html", name  # shown inside the report, not downloaded
    parser = Tables()
    parser.feed(built.page(path))
    [rows] = parser.tables
    table = pl.read_csv(source, separator="\t" if source.suffix == ".tsv" else ",", infer_schema_length=None)
    assert rows[0] == table.columns, name
    assert len(rows) - 1 == table.height, name
    for shown, row in zip(rows[1:], table.iter_rows(), strict=True):
        assert all(same_cell(s, v) for s, v in zip(shown, row, strict=True)), (name, shown, row)


def check_results_page(built: Built) -> None:
    path = "results/final/report/RESULTS.html"
    assert built.results[path]["mime_type"] == "text/html"
    page = built.page(path)
    markdown = (built.root / "results" / "final" / "RESULTS.md").read_text()
    shown = text_of(page)
    for line in markdown.splitlines():
        if line.startswith("#"):
            assert line.lstrip("#").strip().replace("`", "") in shown, line
    findings = markdown[markdown.index("## Findings") : markdown.index("\n## ", markdown.index("## Findings") + 5)]
    for token in re.findall(r"\d+\.\d+", findings):
        assert token in shown, token
    assert page.count('src="data:image/png;base64,') == len(FIGURES)  # every figure embedded
    front = built.var("workflow-desc", "workflow_desc")
    assert 'id="results-title"' in front and "Findings" in front


def rulegraph(built: Built) -> tuple[set[str], set[tuple[str, str]]]:
    run = snakemake(built.root, *built.config, "--rulegraph")
    assert run.returncode == 0, run.stderr[-2000:]
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', run.stdout, re.M))
    edges = {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", run.stdout, re.M)}
    return set(names.values()), edges


def check_rule_graph(built: Built) -> None:
    spec = built.var("rulegraph", "rulegraph_spec")
    data = {d["name"]: d["values"] for d in spec["data"]}
    rules = [node["rule"] for node in data["node-data"]]
    links = data["link-data"] + data["link-data-direct"]
    edges = {(link["sourcerule"], link["targetrule"]) for link in links}
    for link in links:  # indexes and names agree
        assert rules[link["source"]] == link["sourcerule"] and rules[link["target"]] == link["targetrule"]
    expected_rules, expected_edges = rulegraph(built)
    assert len(rules) == len(set(rules)), "a rule drawn twice"
    assert set(rules) == expected_rules
    assert edges == expected_edges


def test_offline_report_holds_results_tables_and_the_rule_graph(offline):
    check_results_page(offline)
    for name in TABLES:
        check_table_page(offline, name, offline.root / "results" / "final" / "tables" / f"{name}.csv")
    check_rule_graph(offline)
    categories = offline.var("categories")
    assert "results/final/report/RESULTS.html" in [f for files in categories[RESULTS_CATEGORY].values() for f in files]
    for name in [*TABLES, *FIGURES]:
        path = (f"results/final/report/tables/{name}.html" if name in TABLES else f"results/final/{name}.png")
        assert any(path in files for files in categories[REPORT_CATEGORIES[name]].values()), name
    assert not any(p.endswith((".csv", ".md")) for p in offline.results), "a table or RESULTS.md as a download"


def test_import_report_holds_the_first_study_tables(imported):
    check_results_page(imported)
    assert "Reproduction of the first study" in text_of(imported.page("results/final/report/RESULTS.html"))
    for name in [*TABLES, *FIRST_STUDY_TABLES]:
        suffix = ".tsv" if name in FIRST_STUDY_TABLES else ".csv"
        check_table_page(imported, name, imported.root / "results" / "final" / "tables" / f"{name}{suffix}")
    assert FIRST_STUDY in imported.var("categories")
    check_rule_graph(imported)


# ---- in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1400,1000", "--virtual-time-budget=8000", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def open_result(built: Built, path: str, name: str) -> Path:
    """The report with a click on a result scripted in: its view opens on load."""
    click = (f"<script>window.addEventListener('load', function () {{ setTimeout(function () {{"
             f"app.showResultInfo({json.dumps(path)}); app.setView({{content: 'img', resultPath: {json.dumps(path)},"
             f" contentPath: results[{json.dumps(path)}].data_uri}}); }}, 300); }});</script></body>")
    page = built.root / name
    page.write_text(built.html.replace("</body>", click, 1), encoding="utf-8")
    return page


def screenshot(built: Built, page: Path, out: Path) -> tuple[np.ndarray, str]:
    shot = chromium(f"--screenshot={out}", page.as_uri(), cwd=built.root)
    assert out.exists(), shot.stderr[-2000:]
    dom = chromium("--dump-dom", page.as_uri(), cwd=built.root).stdout
    return np.asarray(Image.open(out).convert("L"), dtype=float), dom


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (tests/setup.d/50-chromium.sh)")
def test_report_pages_in_a_browser_show_the_results(offline, tmp_path):
    image, dom = screenshot(offline, offline.root / "report.html", tmp_path / "main.png")
    assert image.std() > 10 and (image < 128).mean() > 0.005, "the main page is blank"
    assert re.search(r'<h1 id="results-title">Results</h1>', dom), "the main page lacks the results' title"
    assert "Findings" in dom
    figure = "results/final/fig2_persona_dataset_heatmap.png"
    page = open_result(offline, figure, "figure.html")
    image, dom = screenshot(offline, page, tmp_path / "figure.png")
    assert image.std() > 10 and (image < 128).mean() > 0.005, "the figure page is blank"
    assert "fig2_persona_dataset_heatmap.png" in dom and offline.results[figure]["data_uri"][:200] in dom
