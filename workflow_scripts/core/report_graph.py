"""The rule graph of `snakemake --report`, drawn as `snakemake --rulegraph` draws it: one
node per rule and an edge wherever a job of one rule needs a job of another.

Snakemake's report keeps one job per rule per level of the job DAG's topological order,
so a rule whose jobs sit at two levels (a figure drawn from the answers beside one drawn
from the tables) appears twice, and an edge that only a job other than the kept one has
is lost. `rule_graph_spec` builds the same payload (nodes with positions, links by node
index) from the rules instead; `use_in_report` hands it to the report.
"""

from __future__ import annotations

from collections import defaultdict


def rule_edges(dag) -> set[tuple[str, str]]:
    """(dependency rule, rule) for every job and each of its dependencies, as the rule
    graph of `snakemake --rulegraph` has them."""
    return {
        (dependency.rule.name, job.rule.name)
        for job in dag.jobs
        for dependency in dag.dependencies[job]
    }


def rule_levels(rules: set[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    """Each rule's longest path from a rule without dependencies (self-edges ignored)."""
    parents = defaultdict(set)
    for source, target in edges:
        if source != target:
            parents[target].add(source)
    levels: dict[str, int] = {}

    def level(rule: str, path: frozenset = frozenset()) -> int:
        if rule not in levels:
            before = [level(p, path | {rule}) for p in parents[rule] if p not in path]
            levels[rule] = 1 + max(before, default=-1)
        return levels[rule]

    for rule in rules:
        level(rule)
    return levels


def rule_graph_spec(dag):
    """(spec, xmax, ymax) in the shape of `snakemake.report.rulegraph_spec.rulegraph_spec`."""
    edges = rule_edges(dag)
    rules = {job.rule.name for job in dag.jobs}
    levels = rule_levels(rules, edges)
    order = sorted(rules, key=lambda rule: (levels[rule], rule))
    index = {rule: i for i, rule in enumerate(order)}
    nodes = [{"rule": rule, "fx": 10, "fy": i * 50} for i, rule in enumerate(order)]
    links, direct = [], []
    for source, target in sorted(edges, key=lambda edge: (index[edge[1]], index[edge[0]])):
        link = {"target": index[target], "source": index[source], "sourcerule": source, "targetrule": target,
                "value": 1}
        (direct if index[target] - index[source] == 1 else links).append(link)
    ymax = max((node["fy"] for node in nodes), default=0)
    return {"nodes": nodes, "links": links, "links_direct": direct}, 100, ymax


def use_in_report() -> None:
    """Make `snakemake --report` draw `rule_graph_spec` (cheap: patches a name, imports
    nothing new when no report is built)."""
    import sys

    import snakemake.report.rulegraph_spec as spec_module

    spec_module.rulegraph_spec = rule_graph_spec
    reporter = sys.modules.get("snakemake.report.html_reporter")
    if reporter is not None:
        reporter.rulegraph_spec = rule_graph_spec
