"""A miniature of the paper's ablations (Tables 1, 3, 4 and 7), and of our own departures
from the paper, on a labelled store.

    run_ablation("data/sample.zarr", out_dir="runs/ablation", config="configs/pretrain/demo_cpu.yaml")

For every variant and seed: pretrain the base configuration with the variant's overrides,
then evaluate retrieval (test queries vs train gallery, 10 clips per video, at the clip
the model was trained on) once per label set of the store (the sample set has two:
``motion`` and ``scene``), and a linear probe on the same cached features (logistic
regression, train videos fit, test videos score): cosine retrieval is dominated by the
features' largest directions, a linear probe also finds information in small ones, so
together they tell "not learned" from "learned but outweighed".  ``random init``
evaluates seeded random V-Networks of the same architecture, shown the same clip: the
floor every pretrained variant must beat.  The table gives every number as mean ±
standard deviation over the seeds, and the pretext accuracies (paper Table 7) averaged
over the last quarter of each run, each beside its blind level (what a predictor that
ignores its input scores on the same candidates).

Variants, each one switch away from the base configuration (the method):

* ``random init (RGB)`` -- random init of the base backbone's RGB network (no pathway
  suffix) at the same clip and width: the scene floor.
* ``context + motion``  -- the method: context matching + future-motion prediction.
* ``blind control``     -- ``model.blind=true``: the pretext heads see zeros instead of the
  clip, so their accuracies are the MEASURED blind level of each task.
* ``context only`` / ``motion only`` -- one task (paper Table 3).
* ``current motion``    -- the MV target is the motion inside the clip (paper Table 4).
* ``MSE on MVs``        -- regress MV values instead of the pointwise InfoNCE (paper Table 1).
* one variant per departure from the paper that the base configuration makes or could
  make (:data:`DEPARTURES`), named by its override, e.g. ``model.motion_predictor=transformer``:
  each switched back (or forward) alone.

:func:`decide` then answers the paper's questions and "does this departure matter" from
the table, with the rule it states (a difference larger than twice its standard error is
decided; anything less is "not decided", whichever way the means lean).

Resumable: a run whose ``last.pt`` already holds all its steps is not trained again, and
retrieval features are cached per checkpoint, so re-running the command after an
interruption only does what is missing.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from comode.evaluate.ablation_table import (
    METHOD,
    RANDOM_INIT,
    RANDOM_RGB_INIT,
    AblationCell,
    ablation_table_rows,
    decide,
    format_decisions,
    format_table,
    summarise,
)
from comode.evaluate.linear import run_linear
from comode.evaluate.options import FeatureOptions, fill_feature_caches
from comode.evaluate.retrieval import run_retrieval
from comode.models.pathways import PATHWAY_SUFFIXES
from comode.store import open_store
from comode.train.config import load_config
from comode.train.loop import run_pretraining

__all__ = [
    "VARIANTS",
    "RANDOM_INIT",
    "RANDOM_RGB_INIT",
    "DEPARTURES",
    "AblationCell",
    "variants_for",
    "rgb_backbone",
    "pretext_metrics",
    "run_ablation",
    "summarise",
]


# The paper's questions (and the blind control), fixed overrides.
VARIANTS: dict[str, tuple[str, ...] | None] = {
    RANDOM_INIT: None,
    RANDOM_RGB_INIT: None,
    METHOD: (),
    "blind control": ("model.blind=true",),
    "context only": ("model.use_motion=false",),
    "motion only": ("model.use_context=false",),
    "current motion": ("data.motion_window=current",),
    "MSE on MVs": ("model.motion_objective=mse",),
}

# Our departures from the paper: config key -> the values it can take.  A variant is made
# for every value other than the base config's ("<key>=<value>").  The V-Network's input
# is the backbone name's pathway suffix (comode.models.backbones.PATHWAY_SUFFIXES).
DEPARTURES: dict[str, tuple[Any, ...]] = {
    "model.backbone": ("", "_diff", "_rgbdiff", "_slowrgbdiff"),
    "model.pathway_tasks": ("shared", "split"),
    "model.motion_predictor": ("transformer", "conv"),
    "model.rotated_negatives": (False, True),
    "loss.motion_candidates": ("all", "same_position"),
    "model.motion_head": ("linear", "mlp_bn"),
    "model.zero_init_residual": (False, True),
    "data.iframe_mv": ("zero", "interpolate"),
    "data.camera_compensation": ("none", "median"),
    "data.negative_min_distance": (0.0, 0.1),
    "data.clip_stride": (2, 4),
    "data.crop_scale": (0.2, 0.5),
    "loss.alpha": (0.25, 0.5, 0.75),
}
# Pretext accuracies are averaged over this last share of a run's steps (one step is noisy).
PRETEXT_TAIL = 0.25


def rgb_backbone(name: str) -> str:
    """The RGB network a pathway backbone is built on (``r3d_26_slowrgbdiff`` -> ``r3d_26``):
    the backbone of the scene floor ``random init (RGB)``; a one-pathway name is its own."""

    for suffix in PATHWAY_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def variants_for(base: Any) -> dict[str, tuple[str, ...] | None]:
    """Every variant for the base config ``base`` (a PretrainConfig): :data:`VARIANTS`, then
    one per departure value other than the base's, named by its override.

    Split pathway tasks need an RGB and a difference pathway: a one-pathway backbone
    variant of a split base is run with ``model.pathway_tasks=shared`` too, and the split
    variant of a one-pathway base does not exist."""

    def two_pathways(backbone: str) -> bool:
        return any(backbone.endswith(s) and len(p) == 2 for s, p in PATHWAY_SUFFIXES.items())

    out = dict(VARIANTS)
    for key, values in DEPARTURES.items():
        section, name = key.split(".")
        current = getattr(getattr(base, section), name)
        if key == "model.backbone":
            rgb = rgb_backbone(current)
            options = [rgb + suffix for suffix in values]
        else:
            options = list(values)
        for value in options:
            if value == current:
                continue
            if key == "model.pathway_tasks" and value == "split" and not two_pathways(base.model.backbone):
                continue
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            override = f"{key}={text}"
            shared = key == "model.backbone" and base.model.pathway_tasks == "split" and not two_pathways(value)
            out[override] = (override, "model.pathway_tasks=shared") if shared else (override,)
    return out


def pretext_metrics(metrics_path: Path) -> dict[str, float]:
    """Last-quarter means of the pretext accuracies, the motion loss and their blind levels."""
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    tail = records[-max(1, int(len(records) * PRETEXT_TAIL)) :]

    def mean(key: str) -> float:
        values = [r[key] for r in tail if r.get(key) is not None and math.isfinite(r[key])]
        return statistics.fmean(values) if values else math.nan

    keys = ("acc_context", "acc_motion", "blind_acc_context", "blind_acc_motion", "loss_motion", "blind_loss_motion")
    return {key: mean(key) for key in keys}


def _label_sets(store_url: str) -> list[str | None]:
    """The store's label sets (e.g. ["motion", "scene"]); [None] = its primary labels only."""
    sets = open_store(store_url).label_sets
    return list(sets) or [None]


def _pretrain(
    store_url: str, run_dir: Path, config_path: Path | None, overrides: Sequence[str], *, show_progress: bool
) -> Path:

    checkpoint = run_dir / "last.pt"
    config = load_config(config_path, overrides)
    summary = run_pretraining(
        config, store=store_url, out_dir=run_dir, resume=checkpoint.is_file(), show_progress=show_progress
    )
    return summary.checkpoint


def _slug(name: str) -> str:
    return name.replace(" + ", "+").replace(" ", "_").replace("=", "-")


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
    clips: int = 10,
    show_progress: bool = False,
    on_cell: Callable[[AblationCell], None] | None = None,
) -> list[AblationCell]:
    """Train and evaluate every (variant, seed); write ``out_dir/ablation.json`` and
    ``ablation.md`` (rewritten after every cell).

    Args:
        config: the shared pretraining config (YAML, e.g. configs/pretrain/demo_cpu.yaml).
        base_overrides: ``key=value`` overrides of it shared by all variants (e.g.
            ``max_steps``); each variant adds its own on top, and ``seed=N`` last.
        floor_seeds: seeds of the random-init floor (default: ``seeds``); it costs only a
            feature extraction per seed, so the demo gives it more seeds than it trains.
        variants: names from :func:`variants_for` the base config (default: all).
        workers: DataLoader processes of the retrieval feature extraction.
        clips: test clips per video of every evaluation (the paper's protocol: 10).
        on_cell: called after each finished cell (progress reporting).
    """

    out_dir = Path(out_dir)
    config_path = Path(config) if config is not None else None
    base = load_config(config_path, base_overrides)  # validates the shared settings once, up front
    known = variants_for(base)
    names = list(variants) if variants is not None else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; known: {list(known)}")
    label_sets = _label_sets(store_url)

    def feature_options(name: str, seed: int, run_dir: Path) -> FeatureOptions:
        # Both evaluations of a cell read one feature cache: the network runs once per seed.
        return FeatureOptions.random_init_of(
            base,
            backbone=rgb_backbone(base.model.backbone) if name == RANDOM_RGB_INIT else None,
            seed=int(seed),
            cache_dir=run_dir / "features",
            workers=workers,
            clips=clips,
        )

    def seeds_of(name: str) -> Sequence[int]:
        return floor_seeds if name in (RANDOM_INIT, RANDOM_RGB_INIT) and floor_seeds is not None else seeds

    # The random-init floors need no training: their features come from one pass over the
    # videos (each batch decoded once, shown to every floor network) before the first cell.
    floors = [
        ("random", feature_options(name, seed, out_dir / f"{_slug(name)}_seed{seed}"))
        for name in names
        if known[name] is None
        for seed in seeds_of(name)
    ]
    if floors:
        fill_feature_caches(store_url, floors, split=split)
    cells: list[AblationCell] = []
    for name in names:
        for seed in seeds_of(name):
            cell = AblationCell(variant=name, seed=int(seed))
            overrides = known[name]
            run_dir = out_dir / f"{_slug(name)}_seed{seed}"
            if overrides is None:
                source = "random"
            else:
                source = str(
                    _pretrain(
                        store_url,
                        run_dir,
                        config_path,
                        [*base_overrides, *overrides, f"seed={seed}"],
                        show_progress=show_progress,
                    )
                )
                for key, value in pretext_metrics(run_dir / "metrics.jsonl").items():
                    setattr(cell, key, value)
            cell.run_dir = str(run_dir)
            common = dict(split=split, features=feature_options(name, seed, run_dir))
            for label_set in label_sets:
                name_of_set = label_set or "label"
                retrieval = run_retrieval(
                    store_url,
                    source,
                    out_dir=run_dir / f"retrieval_{name_of_set}",
                    picture_queries=0,
                    label_set=label_set,
                    **common,
                )
                cell.recall_at_1[name_of_set] = float(retrieval.report["metrics"]["R@1"])
                linear = run_linear(
                    store_url, source, out_dir=run_dir / f"linear_{name_of_set}", label_set=label_set, **common
                )
                cell.linear_top1[name_of_set] = float(linear.report["metrics"]["top1"])
            if {"motion", "scene"} <= set(label_sets):
                disjoint = run_retrieval(
                    store_url,
                    source,
                    out_dir=run_dir / "retrieval_motion_other_scene",
                    picture_queries=0,
                    label_set="motion",
                    other_than="scene",
                    **common,
                )
                cell.recall_at_1_other_scene = float(disjoint.report["metrics"]["R@1"])
            cells.append(cell)
            # Rewritten after every cell: an interrupted ablation keeps what it measured.
            _write(
                out_dir / "ablation.json",
                cells,
                known,
                config=str(config_path),
                base_overrides=base_overrides,
                seeds=seeds,
                floor_seeds=floor_seeds if floor_seeds is not None else seeds,
                store_url=store_url,
                clips_per_video=clips,
            )
            if on_cell is not None:
                on_cell(cell)
    return cells


def _write(path: Path, cells: Sequence[AblationCell], known: Mapping[str, Any], **settings: Any) -> None:
    """``ablation.json`` (every cell, the table, the decisions) and ``ablation.md`` beside it."""
    rows = ablation_table_rows(cells)
    decisions = decide(rows)
    payload = {
        "settings": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in settings.items()},
        "variants": {name: known[name] for name in dict.fromkeys(c.variant for c in cells)},
        "cells": [c.__dict__ for c in cells],
        "table": rows,
        "decisions": [d.__dict__ for d in decisions],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    path.with_suffix(".md").write_text(format_table(rows) + "\n\n" + format_decisions(decisions) + "\n")
