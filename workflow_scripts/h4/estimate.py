"""What H4 adds to a grid, before any run: GPU jobs and answers (so judge requests),
as upper bounds (every direction extracted; a skipped one samples nothing).

    steering:  models x personas x EM datasets jobs, each questions x n x (scales + scale 0)
    ablation:  models x personas x EM datasets x seeds jobs, each questions x n x
               (1 unablated + its own direction + the reference's, or every persona's)
    judge:     2 requests (aligned, coherent) per answer, less what the cache holds
"""

from __future__ import annotations

from workflow_scripts.core.grid import Grid

KEYS = (
    "activation_jobs", "steer_jobs", "ablate_jobs", "extraction_answers",
    "steer_answers", "ablate_answers", "answers", "judge_requests",
)  # fmt: skip


def h4_counts(config: dict, n_questions: int) -> dict[str, int]:
    """Jobs and answers of the H4 stage of a validated config (zeros when it is off)."""
    h4 = config.get("h4") or {}
    if not h4.get("enabled"):
        return dict.fromkeys(KEYS, 0)
    grid = Grid.from_config(config)
    em = [d for d in grid.datasets if config["datasets"][d]["role"] == "em"]
    reference = config["statistics"]["reference_persona"]
    runs = len(grid.models) * len(em) * len(grid.seeds)
    per_condition = n_questions * int(h4["n"])
    steer_conditions = len({0.0, *map(float, h4["scales"])})
    if h4["cross_ablation"] == "all":
        ablate_conditions = len(grid.personas) * (1 + len(grid.personas))
    else:  # the reference's own run has one source, every other persona two
        ablate_conditions = sum(1 + (1 if p == reference else 2) for p in grid.personas)
    steer_answers = len(grid.models) * len(grid.personas) * len(em) * steer_conditions * per_condition
    ablate_answers = runs * ablate_conditions * per_condition
    answers = steer_answers + ablate_answers
    return {
        "activation_jobs": runs * len(grid.personas),
        "steer_jobs": len(grid.models) * len(grid.personas) * len(em),
        "ablate_jobs": runs * len(grid.personas),
        # each direction reads its run's judged answers: at most questions x sampling.n
        "extraction_answers": runs * len(grid.personas) * n_questions * int(config["sampling"]["n"]),
        "steer_answers": steer_answers,
        "ablate_answers": ablate_answers,
        "answers": answers,
        "judge_requests": 2 * answers,
    }
