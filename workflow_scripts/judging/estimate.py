"""Dry-run estimate of the judge's requests and cost for a whole grid; sends nothing.

    python -m workflow_scripts.judging.estimate --configfile config/config.yaml [--results results]

Per (model, persona, dataset) cell: where the samples file exists, the exact judge
prompts are built and looked up in the judge's cache (so the estimate says what a
run would still send); elsewhere the cell is nominal: questions x n answers of
`sampling.max_new_tokens` tokens (an upper bound on answer length). Tokens: about
4 characters a token (typical English); `max_cost_usd` uses the budget's bound
(one token per UTF-8 byte), which no run exceeds.

Every judge is estimated: the primary (`judge:`) and each secondary judge of
`judges.secondary` on its answers: where the primary judged table exists, exactly the
subsample the judge will score; elsewhere ceil(share x answers) per cell (the low
stratum's oversampling adds up to `low_score_weight - 1` times that share of the answers
the primary scores low).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from workflow_scripts.core.grid import Grid
from workflow_scripts.core.io_utils import read_parquet, read_yaml
from workflow_scripts.judging.accounting import (
    CHAT_OVERHEAD_TOKENS,
    Prices,
    estimated_prompt_tokens,
    max_prompt_tokens,
)
from workflow_scripts.judging.cache import JudgementCache, slug
from workflow_scripts.judging.kinds import judge_kind
from workflow_scripts.judging.openai_judge import request_options
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.tasks import METRICS, JudgeQuestion, build_tasks, load_questions

REPO = Path(__file__).resolve().parents[2]

CHARS_PER_TOKEN = 4
NOMINAL_QUESTIONS = 8  # Betley's first-plot questions, when the file is not at hand
NOMINAL_TEMPLATE_CHARS = 1500  # about the length of Betley's judge prompts


@dataclass
class CellEstimate:
    model: str
    persona: str
    dataset: str
    source: str  # "samples" (exact prompts) or "nominal"
    answers: int
    judgements: int  # distinct (metric, question, answer)
    cached: int
    to_send: int
    prompt_tokens: int  # of the requests still to send
    completion_tokens: int
    cost_usd: float
    max_cost_usd: float


def load_config(paths: Sequence[str | Path]) -> dict:
    """Config files merged (later ones win at the top level), with the schema's defaults."""
    from snakemake.utils import validate

    config: dict = {}
    for path in paths:
        config.update(read_yaml(path) or {})
    validate(config, str(REPO / "config" / "schema.yaml"), set_default=True)
    return config


def grid_cells(config: dict) -> list[tuple[str, str, str]]:
    return Grid.from_config(config).judged_cells()


def questions_for(config: dict, results: Path) -> dict[str, JudgeQuestion] | None:
    prepared = results / "eval" / "questions.json"
    if prepared.exists():
        return load_questions(prepared)
    source = config["questions"]["source"]
    if source["type"] == "local" and Path(source["path"]).exists():
        from workflow_scripts.sampling.questions import parse_questions

        parsed = parse_questions(source["path"], config["questions"].get("ids"))
        return {q.id: JudgeQuestion(q.id, q.prompt, q.judge_prompts) for q in parsed}
    return None


def estimate_grid(
    config: dict, results: str | Path = "results", judge: dict | None = None, subsample=None
) -> list[CellEstimate]:
    """Per cell, the requests and cost of one judge (default: the primary, `judge:`);
    with `subsample` (judging.subsample.Subsample), on the answers it chooses."""
    import math

    import polars as pl

    from workflow_scripts.judging.run import judge_identity
    from workflow_scripts.judging.subsample import choose

    results = Path(results)
    settings = JudgeSettings.from_config(config["judge"] if judge is None else judge)
    partial = subsample is not None and not subsample.everything
    prices = Prices(settings.price_per_mtok_input, settings.price_per_mtok_output)
    if not judge_kind(settings.kind).billed:
        prices = Prices(0.0, 0.0)
    max_tokens = request_options(settings.method)["max_tokens"]
    judge_model_dir = results / settings.model / "base" / "model"
    judge_id = judge_identity(settings, judge_model_dir if (judge_model_dir / "config.json").exists() else None)
    cache = JudgementCache(Path(settings.cache_dir) / slug(judge_id), "estimate")
    questions = questions_for(config, results)
    sampling = config.get("sampling", {})
    n = int(sampling.get("n", 50))
    answer_chars = int(sampling.get("max_new_tokens", 600)) * CHARS_PER_TOKEN
    estimates = []
    for model, persona, dataset in grid_cells(config):
        samples = results / model / "samples" / f"{persona}.parquet"
        primary = results / model / "judged" / persona / f"{dataset}.parquet"
        if partial and primary.exists() and questions is not None:
            samples = primary  # the subsample is chosen by the primary's scores
        if samples.exists() and questions is not None and not (partial and samples != primary):
            rows = read_parquet(samples).filter(pl.col("dataset") == dataset)
            if partial:
                rows = choose(rows, subsample)
            tasks, _ = build_tasks(rows.iter_rows(named=True), questions, judge_id, settings.method, str(samples))
            cached = cache.load(t.key for t in tasks)
            pending = [t.prompt for t in tasks if t.key not in cached]
            answers, judgements, source = rows.height, len(tasks), "samples"
            prompt_tokens = sum(estimated_prompt_tokens(p) for p in pending)
            bound_tokens = sum(max_prompt_tokens(p) for p in pending)
        else:
            n_questions = len(questions) if questions is not None else NOMINAL_QUESTIONS
            templates = [len(t) for q in questions.values() for t in q.templates.values()] if questions else [NOMINAL_TEMPLATE_CHARS]
            chars = sum(templates) / len(templates) + answer_chars + 100
            answers = n_questions * n
            if partial:
                answers = math.ceil(subsample.share * answers)
            judgements = answers * len(METRICS)
            pending = [None] * judgements
            cached = {}
            source = "nominal"
            prompt_tokens = int(judgements * (chars / CHARS_PER_TOKEN + CHAT_OVERHEAD_TOKENS // 2))
            bound_tokens = int(judgements * (chars + CHAT_OVERHEAD_TOKENS))
        completion_tokens = len(pending) * max_tokens
        estimates.append(
            CellEstimate(
                model, persona, dataset, source, answers, judgements, len(cached), len(pending),
                prompt_tokens, completion_tokens,
                round(prices.cost(prompt_tokens, completion_tokens), 4),
                round(prices.cost(bound_tokens, completion_tokens), 4),
            )
        )
    return estimates


def estimate_judges(config: dict, results: str | Path = "results") -> dict[str, list[CellEstimate]]:
    """The estimate of every judge: "judge" (the primary) and each secondary by name."""
    from workflow_scripts.judging.secondary import secondary_judges

    estimates = {"judge": estimate_grid(config, results)}
    for name, secondary in secondary_judges(config).items():
        judge = {**secondary.judge}
        estimates[name] = estimate_grid(config, results, judge, secondary.subsample)
    return estimates


def totals(estimates: Sequence[CellEstimate]) -> dict:
    keys = ("answers", "judgements", "cached", "to_send", "prompt_tokens", "completion_tokens", "cost_usd", "max_cost_usd")
    total = {k: sum(getattr(e, k) for e in estimates) for k in keys}
    total["cost_usd"] = round(total["cost_usd"], 2)
    total["max_cost_usd"] = round(total["max_cost_usd"], 2)
    total["cells"] = len(estimates)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", default=[str(REPO / "config" / "offline.yaml")])
    parser.add_argument("--results", default="results")
    parser.add_argument("--cells", action="store_true", help="print every cell, not only the totals per model")
    args = parser.parse_args(argv)
    import polars as pl

    config = load_config(args.configfile)
    estimates = estimate_grid(config, args.results)
    frame = pl.DataFrame([asdict(e) for e in estimates])
    judge = config["judge"]
    print(f"judge: {judge['kind']} {judge['model']} ({judge.get('method', 'logprob')}), concurrency {judge.get('concurrency')}")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
        if args.cells:
            print(frame)
        by_model = frame.group_by("model", maintain_order=True).agg(
            pl.len().alias("cells"), *(pl.col(c).sum() for c in frame.columns[4:])
        )
        print(by_model)
    total = totals(estimates)
    print(
        f"total: {total['to_send']} requests to send ({total['cached']} cached) for {total['judgements']} "
        f"judgements of {total['answers']} answers; about {total['cost_usd']} USD, at most {total['max_cost_usd']} USD"
    )
    secondary = {name: e for name, e in estimate_judges(config, args.results).items() if name != "judge"}
    for name, cells in secondary.items():
        print(secondary_line(name, config, cells))
    if secondary:
        every = totals([c for cells in (estimates, *secondary.values()) for c in cells])
        print(f"all judges: {every['to_send']} requests, about {every['cost_usd']} USD, at most {every['max_cost_usd']} USD")
    return 0


def secondary_line(name: str, config: dict, cells: Sequence[CellEstimate]) -> str:
    judge = config["judges"]["secondary"][name]["judge"]
    total = totals(cells)
    return (
        f"secondary judge {name}: {judge['kind']} {judge['model']}: {total['to_send']} requests "
        f"({total['cached']} cached) for {total['answers']} answers, about {total['cost_usd']} USD, "
        f"at most {total['max_cost_usd']} USD"
    )


if __name__ == "__main__":
    sys.exit(main())
