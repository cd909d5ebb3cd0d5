"""The pages of `snakemake --report` (rule `report_pages`): RESULTS.md as an HTML page with
its figures embedded, its findings as the report's front page, and every table as a
sortable HTML table. The report shows an HTML file inside itself (a CSV or Markdown file
would only be a download), and each page is self-contained: the report opens it from a
data URI, where no relative link resolves.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)


COMMENT = re.compile(r"\s*<!--.*?-->", re.S)
FIGURE_WIDTH_PX = 1400  # figures in RESULTS.html: enough to read, a fraction of the 300-dpi PNG


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em 2em;
       color: #1f2328; line-height: 1.45; max-width: 1200px; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 13px; margin: .8em 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable:after { content: " \\2195"; color: #8c959f; }
th[aria-sort="ascending"]:after { content: " \\2191"; color: #1f2328; }
th[aria-sort="descending"]:after { content: " \\2193"; color: #1f2328; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #8c959f; font-style: italic; }
tr:nth-child(even) td { background: #fbfcfd; }
img { max-width: 100%; border: 1px solid #eaeef2; }
code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; }
.meta { color: #57606a; }
"""


# click a header to sort by it (numbers as numbers, empty cells last); again to reverse
SORT_SCRIPT = """
document.querySelectorAll("table").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  var body = table.tBodies[0];
  if (!body) return;
  heads.forEach(function (th, index) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var text = (row.cells[index] || {textContent: ""}).textContent.trim();
        var value = parseFloat(text.replace(/^[<>]\\s*/, ""));
        return {empty: text === "" || text === "\\u2013", number: isNaN(value) ? null : value, text: text};
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x.empty !== y.empty) return x.empty ? 1 : -1;
        var order = (x.number !== null && y.number !== null) ? x.number - y.number : x.text.localeCompare(y.text);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def page(title: str, body: str, sortable: bool = True) -> str:
    script = f"<script>{SORT_SCRIPT}</script>" if sortable else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n{script}</body></html>\n"
    )


def _markdown():
    from markdown_it import MarkdownIt

    # RESULTS.md is the workflow's own output: its HTML comments (each finding's source
    # row) pass through as comments
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure_uri(path: Path, max_width: int = FIGURE_WIDTH_PX) -> str:
    """The PNG as a data URI, scaled down to `max_width` pixels when wider."""
    from PIL import Image

    with Image.open(path) as image:
        if image.width <= max_width:
            return _data_uri(path.read_bytes(), "image/png")
        height = round(image.height * max_width / image.width)
        buffer = io.BytesIO()
        image.convert("RGB").resize((max_width, height), Image.LANCZOS).save(buffer, format="PNG", optimize=True)
    return _data_uri(buffer.getvalue(), "image/png")


def markdown_page(text: str, figures: Sequence[str | Path] = (), title: str = "Results") -> str:
    """A Markdown document (RESULTS.md) as one self-contained HTML page: its tables
    sortable, its images (referenced by file name) embedded."""
    by_name = {Path(f).name: Path(f) for f in figures}
    md = _markdown()
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                source = Path(child.attrGet("src") or "").name
                if source in by_name:
                    child.attrSet("src", figure_uri(by_name[source]))
                else:
                    log.warning("%s: image %s is not among the figures given; left as a link", title, source)
    body = md.renderer.render(tokens, md.options, {})
    return page(title, body)


def findings_fragment(text: str, link_text: str = "RESULTS.html", limit: int = 8) -> str:
    """The title and the headline findings of RESULTS.md (top-level bullets, at most
    `limit`), as an HTML fragment for the report's front page: short enough to be read
    beside the rule graph."""
    lines = text.splitlines()
    title = next((line[2:].strip() for line in lines if line.startswith("# ")), "Results")
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Findings"), None)
    headlines: list[str] = []
    if start is not None:
        for line in lines[start + 1 :]:
            if line.startswith("## "):
                break
            if line.startswith("- "):
                headlines.append(COMMENT.sub("", line).rstrip())
    more = len(headlines) - limit
    body = _markdown().render("\n".join(headlines[:limit]) or "_No findings: the tables are empty._")
    rest = f"{more} more findings, e" if more > 0 else "E"
    return (
        f'<h1 id="results-title">{html.escape(title)}</h1>\n<h2>Findings</h2>\n{body}'
        f"<p>{rest}very table, figure and the method: <b>{html.escape(link_text)}</b> in the "
        "category 1. Results (left menu).</p>\n"
    )


def _cell(value) -> tuple[str, str]:
    """(text, css class) of a table cell."""
    if value is None or (isinstance(value, float) and value != value):
        return "", "missing"
    if isinstance(value, bool):
        return str(value).lower(), ""
    if isinstance(value, float):
        return (f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")), "num"
    if isinstance(value, int):
        return str(value), "num"
    return str(value), ""


def read_any_table(path: str | Path) -> pl.DataFrame:
    """A CSV (the statistics tables) or a TSV (the first study's tables), columns as written."""
    path = Path(path)
    separator = "\t" if path.suffix == ".tsv" else ","
    return pl.read_csv(path, separator=separator, infer_schema_length=None)


def table_page(path: str | Path, title: str, description: str = "") -> str:
    """A table file as a sortable HTML table, with its file embedded for download."""
    path = Path(path)
    table = read_any_table(path)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    rows = []
    for row in table.iter_rows():
        cells = []
        for value in row:
            text, css = _cell(value)
            cells.append(f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    mime = "text/tab-separated-values" if path.suffix == ".tsv" else "text/csv"
    download = f'<a download="{html.escape(path.name)}" href="{_data_uri(path.read_bytes(), mime)}">{html.escape(path.name)}</a>'
    body = (
        f"<h1>{html.escape(title)}</h1>\n"
        + (f"<p>{html.escape(description)}</p>\n" if description else "")
        + f'<p class="meta">{table.height} rows, {table.width} columns; click a column\'s header to sort by it; '
        f"empty: no value. File: {download}</p>\n"
        + f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>"
    )
    return page(title, body)


def write_report_pages(
    results_md: Path,
    figures: Sequence[Path],
    tables: dict[str, Path],
    results_html: Path,
    findings_html: Path,
    table_pages: dict[str, Path],
) -> None:
    """Write RESULTS.html, the front-page fragment and one page per table (`tables` and
    `table_pages` share their keys)."""
    from workflow_scripts.core.io_utils import write_text_atomic

    text = Path(results_md).read_text(encoding="utf-8")
    write_text_atomic(results_html, markdown_page(text, figures))
    write_text_atomic(findings_html, findings_fragment(text, Path(results_html).name))
    for name, source in tables.items():
        write_text_atomic(table_pages[name], table_page(source, name))
        log.info("%s: %s", name, table_pages[name])
    log.info("RESULTS.html and %d table pages", len(tables))
