"""Learning curves of a run folder: the pretext accuracies and losses against clips seen,
each beside its blind level -- as a table at milestones, a verdict, and a PNG.

The CPU analogue of the paper's Table 7 (Huang et al., CVPR 2021: motion accuracy by
epoch) is this module run on ``metrics.jsonl``; ``comode plot metrics RUN`` is its command.
Clips seen = step x the run's global batch (``config.yaml``), so runs of different batch
sizes, on a CPU or on GPUs, share one x-axis.  A pretext number means nothing without what
a predictor that ignores its input scores on the same candidates (docs/training.md), so
every row and every panel carries its blind level.

    curves = read_curves("runs/paper-cpu")
    rows = milestone_rows(curves, at=[10_000, 25_000], window_clips=5_000)
    verdict = leaves_blind_level(curves, window_clips=5_000)
    draw_curves(curves, "runs/paper-cpu/curves.png")

Several runs (one change each, say) side by side, at the same number of clips:

    runs = [read_curves(r) for r in ("runs/base", "runs/diff")]
    rows = comparison_rows(runs, at_clips=8_000, window_clips=2_000)
    draw_comparison(runs, "compare.png")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import yaml

from comode.train.config import config_differences
from comode.train.rundir import CONFIG_FILE, read_records

matplotlib.use("Agg")  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

__all__ = [
    "TASKS",
    "Curves",
    "MilestoneRow",
    "ComparisonRow",
    "read_curves",
    "milestone_rows",
    "leaves_blind_level",
    "comparison_rows",
    "draw_curves",
    "draw_comparison",
]

TASKS = ("context", "motion")
# "Leaves its blind level": mean accuracy over the window at least this many times the blind
# accuracy (the paper's motion task is at 2.7x by epoch 10 of Table 7), and mean loss below
# the blind loss by at least LOSS_MARGIN (ln(B + K) for pointwise InfoNCE).
LEAVE_FACTOR = 2.0
LOSS_MARGIN = 0.05


@dataclass(frozen=True)
class Curves:
    """One run's per-step numbers; every array has one entry per logged step (NaN where a
    task is off).  ``columns`` maps ``acc_motion``, ``blind_acc_motion``, ``loss_context`` ...
    to (S,) arrays."""

    run: Path
    batch_size: int
    clips: np.ndarray  # (S,) clips seen after each step
    columns: dict[str, np.ndarray]
    config: dict = field(default_factory=dict)  # the run's config.yaml, as written

    def column(self, name: str) -> np.ndarray:
        return self.columns.get(name, np.full(self.clips.shape, math.nan))


@dataclass(frozen=True)
class MilestoneRow:
    """Means over the ``window_clips`` clips that end at ``clips`` (``reached`` False when
    the run has not seen that many clips: the numbers are then of its last window)."""

    clips: int
    reached: bool
    values: dict[str, float]  # acc_/blind_acc_/loss_/blind_loss_ + task


def read_curves(run: str | Path) -> Curves:
    """The curves of the run folder ``run`` (its ``metrics.jsonl`` and ``config.yaml``).

    Raises:
        FileNotFoundError: no metrics or no config in ``run``.
    """
    run = Path(run)
    records = read_records(run)
    if not records:
        raise FileNotFoundError(f"{run} has no metrics.jsonl records: is it a `train pretrain` run folder?")
    config_path = run / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: clips seen = step x the run's batch size")
    config = yaml.safe_load(config_path.read_text())
    batch_size = int(config["data"]["batch_size"])
    names = sorted({key for record in records for key in record if key != "step"})
    columns = {name: np.array([_number(record.get(name)) for record in records], dtype=np.float64) for name in names}
    clips = np.array([record["step"] for record in records], dtype=np.int64) * batch_size
    return Curves(run=run, batch_size=batch_size, clips=clips, columns=columns, config=config)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _window_means(curves: Curves, end_clips: int, window_clips: int) -> dict[str, float]:
    inside = (curves.clips > end_clips - window_clips) & (curves.clips <= end_clips)
    means = {}
    for task in TASKS:
        for prefix in ("acc_", "blind_acc_", "loss_", "blind_loss_"):
            values = curves.column(prefix + task)[inside]
            values = values[np.isfinite(values)]
            means[prefix + task] = float(values.mean()) if values.size else math.nan
    return means


def milestone_rows(curves: Curves, *, at: Sequence[int], window_clips: int) -> list[MilestoneRow]:
    """One row per milestone in ``at`` (clips seen): each task's accuracy and loss, and
    their blind levels, averaged over the ``window_clips`` clips before it (one step's
    accuracy on a batch of 8 moves in steps of 12.5 %)."""
    last = int(curves.clips[-1])
    return [
        MilestoneRow(clips=int(n), reached=n <= last, values=_window_means(curves, min(int(n), last), window_clips))
        for n in at
    ]


def _has_left(means: dict[str, float], task: str) -> bool:
    """The rule on window means: accuracy >= LEAVE_FACTOR x blind and loss at least
    LOSS_MARGIN below the blind loss (False where the task logged nothing)."""
    acc, blind_acc = means[f"acc_{task}"], means[f"blind_acc_{task}"]
    loss, blind_loss = means[f"loss_{task}"], means[f"blind_loss_{task}"]
    if not all(math.isfinite(v) for v in (acc, blind_acc, loss, blind_loss)):
        return False
    return acc / blind_acc >= LEAVE_FACTOR and loss <= blind_loss - LOSS_MARGIN


def first_left_at(curves: Curves, *, task: str = "motion", window_clips: int) -> int | None:
    """The first clips-seen count at which the ``window_clips`` clips before it meet
    :func:`_has_left` for ``task`` (the run must have seen a whole window), or None: when a
    run left its blind level, not only whether it has by its end.  Running sums over the
    run's steps (one pass, not a window mean per step)."""
    starts = np.searchsorted(curves.clips, curves.clips - window_clips, side="right")  # (S,) first step in each window
    means = {}
    for prefix in ("acc_", "blind_acc_", "loss_", "blind_loss_"):
        values = curves.column(prefix + task)
        finite = np.isfinite(values)
        sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
        counts = np.concatenate([[0], np.cumsum(finite)])
        ends = np.arange(1, len(values) + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[prefix] = (sums[ends] - sums[starts]) / (counts[ends] - counts[starts])
    with np.errstate(invalid="ignore", divide="ignore"):
        left = (
            (means["acc_"] / means["blind_acc_"] >= LEAVE_FACTOR)
            & (means["loss_"] <= means["blind_loss_"] - LOSS_MARGIN)
            & (curves.clips >= window_clips)
        )
    hits = np.flatnonzero(left)
    return int(curves.clips[hits[0]]) if hits.size else None


def leaves_blind_level(curves: Curves, *, task: str = "motion", window_clips: int) -> tuple[bool, str]:
    """Whether ``task`` has left its blind level over the run's last ``window_clips`` clips
    (:func:`_has_left`), and a one-line reason with the numbers (and, when the run met the
    rule before, the first clips-seen count at which it did: :func:`first_left_at`)."""
    last = int(curves.clips[-1])
    means = _window_means(curves, last, window_clips)
    acc, blind_acc = means[f"acc_{task}"], means[f"blind_acc_{task}"]
    loss, blind_loss = means[f"loss_{task}"], means[f"blind_loss_{task}"]
    if not all(math.isfinite(v) for v in (acc, blind_acc, loss, blind_loss)):
        return False, f"the run logged no {task} task"
    ratio = acc / blind_acc
    left = _has_left(means, task)
    first = first_left_at(curves, task=task, window_clips=window_clips)
    return left, (
        f"{task}: acc {100 * acc:.1f} % = {ratio:.2f}x its blind {100 * blind_acc:.1f} %, loss {loss:.3f} against "
        f"blind {blind_loss:.3f}, over the last {window_clips:,} of {last:,} clips: "
        + ("left the blind level" if left else "still at the blind level")
        + (f" (first met over the {window_clips:,} clips before {first:,})" if first is not None else "")
    )


@dataclass(frozen=True)
class ComparisonRow:
    """One run of a comparison: its means over the window that ends at ``clips`` (the
    common budget, or the run's end when it is shorter), the verdict per task, and the
    config keys in which it differs from the first run."""

    run: Path
    clips: int
    values: dict[str, float]  # as MilestoneRow.values
    left: dict[str, bool]  # task -> left its blind level
    differences: list[str]  # e.g. ["model.backbone: 'r3d_26' -> 'r3d_26_diff'"]


# Keys that differ between any two runs without changing what is learned.
_BOOKKEEPING_KEYS = ("save_every_steps", "checkpoint_every_epochs", "data.workers")


def comparison_rows(runs: Sequence[Curves], *, at_clips: int | None = None, window_clips: int) -> list[ComparisonRow]:
    """One row per run, all judged at the same ``at_clips`` (default: the shortest run's
    length), so that runs of different lengths compare on one budget.  The first run is
    the reference of ``differences``."""
    if not runs:
        raise ValueError("no runs to compare")
    budget = int(at_clips) if at_clips is not None else min(int(c.clips[-1]) for c in runs)
    rows = []
    for curves in runs:
        end = min(budget, int(curves.clips[-1]))
        means = _window_means(curves, end, window_clips)  # one pass: the values and the verdicts
        rows.append(
            ComparisonRow(
                run=curves.run,
                clips=end,
                values=means,
                left={task: _has_left(means, task) for task in TASKS},
                differences=config_differences(runs[0].config, curves.config, ignore=_BOOKKEEPING_KEYS),
            )
        )
    return rows


def _rolling_mean(values: np.ndarray, steps: int) -> np.ndarray:
    """(S,) -> (S,): trailing mean over ``steps`` steps, NaNs left out (the per-step
    accuracy of a small batch is too noisy to read)."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - steps, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums[end] - sums[start]) / (counts[end] - counts[start])


def _save(figure: plt.Figure, out: str | Path) -> Path:
    """Write ``figure`` to the PNG ``out`` (its folder made) and free it."""
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def draw_curves(curves: Curves, out: str | Path, *, smooth_clips: int = 2_000, title: str | None = None) -> Path:
    """Write a PNG: top, acc_context and acc_motion (trailing means over ``smooth_clips``
    clips) with their blind levels dashed; bottom, the two losses with theirs."""
    steps = max(1, smooth_clips // curves.batch_size)
    figure, (accuracy_axis, loss_axis) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    colours = {"context": "tab:blue", "motion": "tab:red"}
    for task in TASKS:
        for axis, prefix, scale in ((accuracy_axis, "acc_", 100.0), (loss_axis, "loss_", 1.0)):
            values, blind = curves.column(prefix + task), curves.column(f"blind_{prefix}{task}")
            if not np.isfinite(values).any():
                continue
            axis.plot(curves.clips, scale * _rolling_mean(values, steps), color=colours[task], label=f"{prefix}{task}")
            axis.plot(curves.clips, scale * blind, color=colours[task], linestyle="--", label=f"blind {prefix}{task}")
    accuracy_axis.set_ylabel("accuracy, %")
    loss_axis.set_ylabel("loss")
    loss_axis.set_xlabel(f"clips seen (step x batch {curves.batch_size})")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    accuracy_axis.set_title(title or f"{curves.run.name}: pretext tasks against their blind levels")
    return _save(figure, out)


def draw_comparison(runs: Sequence[Curves], out: str | Path, *, smooth_clips: int = 2_000) -> Path:
    """Write a PNG of several runs: acc_context (top) and acc_motion (bottom), trailing
    means over ``smooth_clips`` clips, one colour per run, each run's blind level dashed in
    its colour (runs of different batch sizes have different blind levels)."""
    figure, axes = plt.subplots(len(TASKS), 1, figsize=(8, 7), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, curves in enumerate(runs):
        colour = colours[index % len(colours)]
        steps = max(1, smooth_clips // curves.batch_size)
        for axis, task in zip(axes, TASKS):
            values = curves.column(f"acc_{task}")
            if not np.isfinite(values).any():
                continue
            axis.plot(curves.clips, 100 * _rolling_mean(values, steps), color=colour, label=curves.run.name)
            axis.plot(curves.clips, 100 * curves.column(f"blind_acc_{task}"), color=colour, linestyle="--", alpha=0.6)
    for axis, task in zip(axes, TASKS):
        axis.set_ylabel(f"acc_{task}, %")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_title("pretext accuracies, blind levels dashed")
    axes[-1].set_xlabel("clips seen")
    return _save(figure, out)
