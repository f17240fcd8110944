"""The ablation table and what it decides: mean and spread over seeds of every measured
cell, and the paper's questions answered by a stated rule (a difference larger than twice
its standard error is decided; anything less is "not decided").

Pure arithmetic on :class:`AblationCell` records (no training, no I/O): the run itself is
:mod:`comode.evaluate.ablation`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = [
    "RANDOM_INIT",
    "RANDOM_RGB_INIT",
    "METHOD",
    "CLAIMS",
    "AblationCell",
    "Decision",
    "ablation_table_rows",
    "format_table",
    "decide",
    "format_decisions",
    "summarise",
]

RANDOM_INIT = "random init"
# Random init of the paper's RGB network (the base backbone without its pathway suffix) at
# the same clip and width: the scene floor a network that keeps appearance must reach.
RANDOM_RGB_INIT = "random init (RGB)"
METHOD = "context + motion"


@dataclass
class AblationCell:
    """One variant x seed: R@1 and linear-probe top-1 per label set, and the pretext
    accuracies with their blind levels (NaN = not trained)."""

    variant: str
    seed: int
    recall_at_1: dict[str, float] = field(default_factory=dict)
    linear_top1: dict[str, float] = field(default_factory=dict)
    acc_context: float = math.nan
    acc_motion: float = math.nan
    run_dir: str | None = None
    blind_acc_context: float = math.nan
    blind_acc_motion: float = math.nan
    loss_motion: float = math.nan
    blind_loss_motion: float = math.nan
    # Scene-disjoint retrieval of the motion labels (a query searches only other scenes).
    recall_at_1_other_scene: float = math.nan


def summarise(cells: Sequence[AblationCell]) -> tuple[str, str]:
    """(the Markdown table, the decisions it supports) of the cells measured so far."""
    rows = ablation_table_rows(cells)
    return format_table(rows), format_decisions(decide(rows))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


# Pretext columns of the table, each shown with its blind level (same cell).
_PRETEXT_COLUMNS = ("acc_context", "acc_motion", "loss_motion")


def ablation_table_rows(cells: Sequence[AblationCell]) -> list[dict[str, Any]]:
    """One row per variant: mean and standard deviation over seeds of each metric (and of
    the blind level beside each pretext metric, ``blind_<metric>``)."""
    rows = []
    for name in dict.fromkeys(c.variant for c in cells):
        mine = [c for c in cells if c.variant == name]
        row: dict[str, Any] = {"variant": name, "seeds": len(mine)}
        for label_set in dict.fromkeys(k for c in mine for k in c.recall_at_1):
            row[f"R@1 {label_set}"] = _mean_std([c.recall_at_1.get(label_set, math.nan) for c in mine])
        if any(math.isfinite(c.recall_at_1_other_scene) for c in cells):
            row["R@1 motion, other scene"] = _mean_std([c.recall_at_1_other_scene for c in mine])
        for label_set in dict.fromkeys(k for c in mine for k in c.linear_top1):
            row[f"linear {label_set}"] = _mean_std([c.linear_top1.get(label_set, math.nan) for c in mine])
        for key in _PRETEXT_COLUMNS:
            row[key] = _mean_std([getattr(c, key) for c in mine])
            row[f"blind_{key}"] = _mean_std([getattr(c, f"blind_{key}") for c in mine])
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: percentages as mean ± std over seeds, each pretext number with its
    blind level in brackets; '-' where not applicable."""
    if not rows:
        return "(no results)"
    columns = [k for k in rows[0] if k not in ("variant", "seeds") and not k.startswith("blind_")]

    def number(value: float, percent: bool) -> str:
        return f"{100 * value:.1f}" if percent else f"{value:.2f}"

    def cell(row: Mapping[str, Any], column: str) -> str:
        mean, std = row[column]
        if not math.isfinite(mean):
            return "-"
        percent = not column.startswith("loss")
        text = f"{number(mean, percent)} ± {number(std, percent)}"
        blind = row.get(f"blind_{column}", (math.nan, math.nan))[0]
        return f"{text} (blind {number(blind, percent)})" if math.isfinite(blind) else text

    header = ["variant", "seeds", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row["variant"], str(row["seeds"]), *(cell(row, c) for c in columns)]) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# What the table says
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One question answered from the table: is ``better`` above ``worse`` on ``metric``?

    ``verdict``: "yes" (mean difference > 2 standard errors), "no, reversed" (< -2 SE) or
    "not decided" (within 2 SE either way); SE = sqrt(s_a^2 / n_a + s_b^2 / n_b) from the
    seeds' sample standard deviations."""

    question: str
    metric: str
    better: str
    worse: str
    difference: float
    standard_error: float
    verdict: str


# (question, better variant, worse variant, metrics) -- the paper's claims and checks.
CLAIMS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("pretraining beats random init on motion", METHOD, RANDOM_INIT, ("R@1 motion", "linear motion")),
    ("pretraining beats random init on scene", METHOD, RANDOM_INIT, ("R@1 scene", "linear scene")),
    ("pretraining keeps the scene of a random RGB network", METHOD, RANDOM_RGB_INIT, ("R@1 scene", "linear scene")),
    ("both tasks beat motion only on motion", METHOD, "motion only", ("R@1 motion", "linear motion")),
    ("both tasks beat context only on scene", METHOD, "context only", ("R@1 scene", "linear scene")),
    ("motion prediction adds motion to context matching", METHOD, "context only", ("R@1 motion", "linear motion")),
    (
        "context only beats random init on motion (a label leak if so)",
        "context only",
        RANDOM_INIT,
        ("R@1 motion", "linear motion"),
    ),
    ("a future target beats the current one", METHOD, "current motion", ("R@1 motion", "linear motion")),
    ("InfoNCE beats MSE", METHOD, "MSE on MVs", ("R@1 motion", "linear motion")),
    ("the pretext tasks beat their measured blind level", METHOD, "blind control", ("acc_motion", "acc_context")),
)


def _compare(question: str, better: Mapping[str, Any], worse: Mapping[str, Any], metric: str) -> Decision | None:
    if metric not in better or metric not in worse:
        return None
    (mean_a, std_a), (mean_b, std_b) = better[metric], worse[metric]
    if not (math.isfinite(mean_a) and math.isfinite(mean_b)):
        return None
    seeds_a, seeds_b = better["seeds"], worse["seeds"]
    difference = mean_a - mean_b
    if seeds_a < 2 and seeds_b < 2:  # no spread known on either side: nothing to weigh it against
        return Decision(
            question, metric, better["variant"], worse["variant"], difference, math.nan, "not decided (1 seed each)"
        )
    # One seed has no spread of its own (its std reads 0): take the other side's, rather
    # than let the one run count as exact.
    std_a, std_b = (std_b if seeds_a < 2 else std_a), (std_a if seeds_b < 2 else std_b)
    error = math.sqrt(std_a**2 / seeds_a + std_b**2 / seeds_b)
    verdict = "yes" if difference > 2 * error else "no, reversed" if difference < -2 * error else "not decided"
    if min(seeds_a, seeds_b) < 2:
        verdict += " (1 seed: the other side's spread)"
    return Decision(question, metric, better["variant"], worse["variant"], difference, error, verdict)


def decide(rows: Sequence[Mapping[str, Any]]) -> list[Decision]:
    """The paper's claims (:data:`CLAIMS`) and, for every departure variant, "does the base
    configuration beat this variant" on motion and scene, for the variants in ``rows``."""
    by_name = {row["variant"]: row for row in rows}
    decisions = []
    for question, better, worse, metrics in CLAIMS:
        if better in by_name and worse in by_name:
            decisions += [d for m in metrics if (d := _compare(question, by_name[better], by_name[worse], m))]
    if METHOD in by_name:
        for name, row in by_name.items():
            if "=" in name:
                question = f"the base configuration beats {name}"
                decisions += [
                    d
                    for m in ("R@1 motion", "linear motion", "R@1 scene", "linear scene", "acc_motion")
                    if (d := _compare(question, by_name[METHOD], row, m))
                ]
    return decisions


def format_decisions(decisions: Sequence[Decision]) -> str:
    """A Markdown table of the decisions (differences in points)."""
    if not decisions:
        return "(nothing to decide: the variants of a question are not in the table)"
    lines = ["| question | metric | difference | 2 SE | verdict |", "|---|---|---|---|---|"]
    for d in decisions:
        lines.append(
            f"| {d.question} | {d.metric} | {100 * d.difference:+.1f} | "
            + (f"{200 * d.standard_error:.1f}" if math.isfinite(d.standard_error) else "-")
            + f" | {d.verdict} |"
        )
    return "\n".join(lines)
