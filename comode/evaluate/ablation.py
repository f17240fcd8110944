"""A miniature of the paper's ablations (Tables 1, 4 and 7) on a labelled store.

    run_ablation("data/sample.zarr", out_dir="runs/ablation", seeds=(0, 1, 2))

For every variant and seed: pretrain the tiny configuration with the variant's overrides,
then evaluate retrieval (test queries vs train gallery, 10 clips per video) once per label
set of the store (the sample set has two: ``motion`` and ``scene``), and a linear probe on
the same cached features (logistic regression, train videos fit, test videos score): cosine
retrieval is dominated by the features' largest directions, a linear probe also finds
information in small ones, so together they tell "not learned" from "learned but
outweighed".  ``random init``
evaluates a seeded random V-Network of the same architecture: the floor every pretrained
variant must beat.  The table gives R@1 as mean ± standard deviation over the seeds, and
linear-probe top-1, and the pretext top-1 accuracies (paper Table 7) averaged over the last
quarter of each run.

Variants (each differs from "context + motion" in exactly one switch):

* ``context + motion``  -- the method: context matching + future-motion prediction (InfoNCE).
* ``context only``      -- ``model.use_motion=false`` (paper Table 3/4 rows).
* ``motion only``       -- ``model.use_context=false``.
* ``current motion``    -- ``data.motion_window=current``: the MV target is the motion inside
  the clip instead of after it (paper Table 4: future vs current).
* ``MSE on MVs``        -- ``model.motion_objective=mse``: regress MV values instead of the
  pointwise InfoNCE on M-Network features (paper Table 1).

Resumable: a run whose ``last.pt`` already holds all its steps is not trained again, and
retrieval features are cached per checkpoint, so re-running the command after an
interruption only does what is missing.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from comode.store import open_store

__all__ = ["VARIANTS", "RANDOM_INIT", "AblationCell", "run_ablation", "ablation_table_rows", "format_table"]

RANDOM_INIT = "random init"
# Variant name -> config overrides on top of the base config (None: no pretraining).
VARIANTS: dict[str, list[str] | None] = {
    RANDOM_INIT: None,
    "context + motion": [],
    "context only": ["model.use_motion=false"],
    "motion only": ["model.use_context=false"],
    "current motion": ["data.motion_window=current"],
    "MSE on MVs": ["model.motion_objective=mse"],
}
# Pretext accuracies are averaged over this last share of a run's steps (one step is noisy).
PRETEXT_TAIL = 0.25


@dataclass
class AblationCell:
    """One variant x seed: R@1 and linear-probe top-1 per label set, and the pretext
    accuracies (NaN = not trained)."""

    variant: str
    seed: int
    recall_at_1: dict[str, float] = field(default_factory=dict)
    linear_top1: dict[str, float] = field(default_factory=dict)
    acc_context: float = math.nan
    acc_motion: float = math.nan
    run_dir: str | None = None


def _pretext_accuracies(metrics_path: Path) -> tuple[float, float]:
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    tail = records[-max(1, int(len(records) * PRETEXT_TAIL)):]

    def mean(key: str) -> float:
        values = [r[key] for r in tail if r.get(key) is not None and math.isfinite(r[key])]
        return statistics.fmean(values) if values else math.nan

    return mean("acc_context"), mean("acc_motion")


def _label_sets(store_url: str) -> list[str | None]:
    """The store's label sets (e.g. ["motion", "scene"]); [None] = its primary labels only."""
    sets = open_store(store_url).dataset.get("label_sets") or {}
    return list(sets) or [None]


def _pretrain(store_url: str, run_dir: Path, config_path: Path | None, overrides: Sequence[str], *,
              show_progress: bool) -> Path:
    from comode.train.config import load_config
    from comode.train.loop import run_pretraining

    checkpoint = run_dir / "last.pt"
    config = load_config(config_path, overrides)
    summary = run_pretraining(config, store=store_url, out_dir=run_dir, resume=checkpoint.is_file(),
                              show_progress=show_progress)
    return summary.checkpoint


def run_ablation(
    store_url: str,
    *,
    out_dir: str | Path,
    config: str | Path | None = None,
    base_overrides: Sequence[str] = (),
    seeds: Sequence[int] = (0, 1, 2),
    floor_seeds: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
    split: str = "1",
    workers: int = 0,
    show_progress: bool = False,
    on_cell: Callable[[AblationCell], None] | None = None,
) -> list[AblationCell]:
    """Train and evaluate every (variant, seed); write ``out_dir/ablation.json``.

    Args:
        config: the shared pretraining config (YAML, e.g. configs/pretrain/tiny_cpu.yaml).
        base_overrides: ``key=value`` overrides of it shared by all variants (e.g.
            ``max_steps``); each variant adds its own on top, and ``seed=N`` last.
        floor_seeds: seeds of the random-init floor (default: ``seeds``); it costs only a
            feature extraction per seed, so the demo gives it more seeds than it trains.
        variants: names from :data:`VARIANTS` (default: all).
        workers: DataLoader processes of the retrieval feature extraction.
        on_cell: called after each finished cell (progress reporting).
    """
    from comode.evaluate.linear import run_linear
    from comode.evaluate.retrieval import run_retrieval
    from comode.train.config import load_config

    out_dir = Path(out_dir)
    names = list(variants) if variants is not None else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; known: {list(VARIANTS)}")
    label_sets = _label_sets(store_url)
    config_path = Path(config) if config is not None else None
    base = load_config(config_path, base_overrides)  # validates the shared settings once, up front
    cells: list[AblationCell] = []
    for name in names:
        for seed in (floor_seeds if name == RANDOM_INIT and floor_seeds is not None else seeds):
            slug = name.replace(" + ", "+").replace(" ", "_")
            cell = AblationCell(variant=name, seed=int(seed))
            overrides = VARIANTS[name]
            if overrides is None:
                source, run_dir = "random", out_dir / f"{slug}_seed{seed}"
            else:
                run_dir = out_dir / f"{slug}_seed{seed}"
                source = str(_pretrain(store_url, run_dir, config_path, [*base_overrides, *overrides, f"seed={seed}"],
                                       show_progress=show_progress))
                cell.acc_context, cell.acc_motion = _pretext_accuracies(run_dir / "metrics.jsonl")
            cell.run_dir = str(run_dir)
            for label_set in label_sets:
                name_of_set = label_set or "label"
                # Both evaluations read one feature cache: the network runs once per seed.
                common = dict(split=split, label_set=label_set, backbone=base.model.backbone,
                              width_multiplier=base.model.width_multiplier, seed=int(seed),
                              cache_dir=run_dir / "features", workers=workers)
                retrieval = run_retrieval(store_url, source, out_dir=run_dir / f"retrieval_{name_of_set}",
                                          picture_queries=0, **common)
                cell.recall_at_1[name_of_set] = float(retrieval.report["metrics"]["R@1"])
                linear = run_linear(store_url, source, out_dir=run_dir / f"linear_{name_of_set}", **common)
                cell.linear_top1[name_of_set] = float(linear.report["metrics"]["top1"])
            cells.append(cell)
            # Rewritten after every cell: an interrupted ablation keeps what it measured.
            _write(out_dir / "ablation.json", cells, config=str(config_path), base_overrides=base_overrides,
                   seeds=seeds, floor_seeds=floor_seeds if floor_seeds is not None else seeds, store_url=store_url)
            if on_cell is not None:
                on_cell(cell)
    return cells


def _write(path: Path, cells: Sequence[AblationCell], **settings: Any) -> None:
    payload = {
        "settings": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in settings.items()},
        "variants": {name: VARIANTS[name] for name in dict.fromkeys(c.variant for c in cells)},
        "cells": [c.__dict__ for c in cells],
        "table": ablation_table_rows(cells),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def ablation_table_rows(cells: Sequence[AblationCell]) -> list[dict[str, Any]]:
    """One row per variant: mean and standard deviation over seeds of each metric."""
    rows = []
    for name in dict.fromkeys(c.variant for c in cells):
        mine = [c for c in cells if c.variant == name]
        row: dict[str, Any] = {"variant": name, "seeds": len(mine)}
        for label_set in dict.fromkeys(k for c in mine for k in c.recall_at_1):
            row[f"R@1 {label_set}"] = _mean_std([c.recall_at_1.get(label_set, math.nan) for c in mine])
        for label_set in dict.fromkeys(k for c in mine for k in c.linear_top1):
            row[f"linear {label_set}"] = _mean_std([c.linear_top1.get(label_set, math.nan) for c in mine])
        row["acc_context"] = _mean_std([c.acc_context for c in mine])
        row["acc_motion"] = _mean_std([c.acc_motion for c in mine])
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: percentages as mean ± std over seeds; '-' where not applicable."""
    if not rows:
        return "(no results)"
    columns = [k for k in rows[0] if k not in ("variant", "seeds")]

    def cell(value: tuple[float, float]) -> str:
        mean, std = value
        return "-" if not math.isfinite(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"

    header = ["variant", "seeds", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row["variant"], str(row["seeds"]), *(cell(row[c]) for c in columns)]) + " |")
    return "\n".join(lines)
