"""What a training run reports: ``metrics.jsonl`` and TensorBoard scalars (progress:
:mod:`comode.progress`).

``metrics.jsonl`` has one JSON object per optimizer step (non-finite numbers as ``null``,
so any JSON reader accepts it), e.g.::

    {"step": 1, "epoch": 0, "lr": 0.0064, "loss": 5.31, "loss_context": 4.10, ...}

A resumed run first drops the records after its checkpoint's step (a crash may have
logged steps that the checkpoint does not contain), so the file of a resumed run equals
the file of an uninterrupted one.  TensorBoard (``tensorboard/``) is optional: without the
``tensorboard`` package only the JSON lines are written.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

from comode.train.rundir import METRICS_FILE, keep_records_until, read_records

__all__ = ["METRICS_FILE", "MetricsLog", "Throughput", "BlindLevelWatch", "KeyCollapseWatch", "read_metrics"]


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends one record per step to ``out_dir/metrics.jsonl`` and to TensorBoard.

    Args:
        out_dir: run directory.
        resume_after_step: when resuming, the checkpoint's step: records with a larger
            step are removed first; None for a fresh run (an existing file is replaced).
        tensorboard: also write TensorBoard scalars (skipped if the package is missing).
    """

    def __init__(self, out_dir: Path, *, resume_after_step: int | None, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        keep_records_until(out_dir, key="step", last=resume_after_step)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self._writer = (
            _tensorboard_writer(Path(out_dir) / "tensorboard", purge_step=resume_after_step) if tensorboard else None
        )

    def write(self, record: Mapping[str, Any]) -> None:
        """One step's numbers; ``record["step"]`` is the TensorBoard x-axis."""
        self._file.write(json.dumps({key: _json_number(value) for key, value in record.items()}) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"train/{key}", value, global_step=record["step"])

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def _tensorboard_writer(log_dir: Path, *, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the JSON lines carry the same numbers
        return None
    # purge_step drops events after the resumed step from an interrupted run's event files.
    return SummaryWriter(log_dir=str(log_dir), purge_step=None if purge_step is None else purge_step + 1)


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``out_dir/metrics.jsonl`` in order (nulls as NaN)."""
    return [{k: (math.nan if v is None else v) for k, v in record.items()} for record in read_records(Path(out_dir))]


class _RecentMeans:
    """The column means of the last ``window`` rows recorded per task (one step is noisy)."""

    def __init__(self, tasks: tuple[str, ...], window: int) -> None:
        self.window = max(1, window)
        self._rows: dict[str, list[tuple[float, ...]]] = {task: [] for task in tasks}

    def add(self, task: str, row: tuple[float, ...]) -> int:
        """Record ``row`` for ``task``; returns how many rows the window now holds."""
        rows = self._rows[task]
        rows.append(row)
        del rows[: -self.window]
        return len(rows)

    def means(self, task: str) -> tuple[float, ...]:
        rows = self._rows[task]
        return tuple(sum(column) / len(rows) for column in zip(*rows))


class _TaskWatch:
    """Warns at most once per pretext task, from the means of its last ``window`` steps.

    A subclass names the metrics it reads per task (:attr:`COLUMNS`, as ``<column>_<task>``)
    and says in :meth:`_message` whether the means call for a warning.
    """

    TASKS = ("context", "motion")
    COLUMNS: tuple[str, ...] = ()

    def __init__(self, *, window: int) -> None:
        self._recent = _RecentMeans(self.TASKS, window)
        self._warned: set[str] = set()

    def update(self, step: int, values: Mapping[str, float]) -> list[str]:
        """Record one step's metrics; returns the warnings due now (each task warns once)."""
        messages = []
        for task in self.TASKS:
            row = tuple(values.get(f"{column}_{task}", math.nan) for column in self.COLUMNS)
            if not all(math.isfinite(v) for v in row):  # a task switched off: NaN
                continue
            held = self._recent.add(task, row)
            if task in self._warned or not self._due(step, held):
                continue
            message = self._message(task, step, held, self._recent.means(task))
            if message is not None:
                self._warned.add(task)
                messages.append(message)
        return messages

    def _due(self, step: int, held: int) -> bool:
        """Whether to judge now, with ``held`` steps in the window."""
        return held >= self._recent.window

    def _message(self, task: str, step: int, held: int, means: tuple[float, ...]) -> str | None:
        raise NotImplementedError


class BlindLevelWatch(_TaskWatch):
    """Warns once per pretext task that is still near its blind level late in a run.

    A contrastive task whose accuracy stays at 1 / candidates has learned nothing a
    predictor blind to its input could not (see ``comode.models.losses.BlindLevel``); its
    loss then only adds noise to the shared backbone.  After ``after`` of the run's steps,
    :meth:`update` compares each task's mean accuracy over the last ``window`` steps with
    its blind level and returns a message for a task within ``margin`` (absolute) of it.

    Args:
        total_steps: steps of the run.
        after: share of the run after which to check (0.5: from the middle on).
        margin: accuracy above the blind level below which a task counts as blind.
        window: steps averaged (one step's accuracy is noisy).
    """

    COLUMNS = ("acc", "blind_acc", "loss", "blind_loss")

    def __init__(self, *, total_steps: int, after: float = 0.5, margin: float = 0.02, window: int = 50) -> None:
        super().__init__(window=window)
        self.first_check = max(1, int(math.ceil(after * total_steps)))
        self.margin = margin

    def _due(self, step: int, held: int) -> bool:
        return step >= self.first_check and held >= min(self._recent.window, step)

    def _message(self, task: str, step: int, held: int, means: tuple[float, ...]) -> str | None:
        acc, blind_acc, loss, blind_loss = means
        if acc >= blind_acc + self.margin:
            return None
        return (
            f"the {task} task is still at its blind level after {step} steps: acc_{task} {100 * acc:.1f} % "
            f"(blind {100 * blind_acc:.1f} %), loss_{task} {loss:.3f} (blind {blind_loss:.3f}), mean of the "
            f"last {held} steps. It has learned nothing a predictor that ignores the clip could not; "
            "see docs/training.md (why a task stays blind, and what helps)"
        )


class KeyCollapseWatch(_TaskWatch):
    """Warns once per pretext task whose keys have collapsed to one vector.

    The keys of a contrastive task (I-frame embeddings, M-Network targets) must differ for
    the task to be learnable.  When they all become the same vector (``key_spread`` near 0,
    see :func:`comode.models.losses.key_spread`), InfoNCE sits at ln(candidates) and its
    gradient to the predictor vanishes: the run goes on, looks busy, and learns nothing more
    on that task.  The paper's formulation did this on 2 CPU cores after ~22.6k clips
    (docs/results/2026-12-07-paper-weight-decay.md).  Checked from the first full window
    on, unlike :class:`BlindLevelWatch`: a collapse can happen at any time.

    Args:
        threshold: mean key spread below which the keys count as collapsed.
        window: steps averaged.
    """

    COLUMNS = ("key_spread",)

    def __init__(self, *, threshold: float = 1e-4, window: int = 50) -> None:
        super().__init__(window=window)
        self.threshold = threshold

    def _message(self, task: str, step: int, held: int, means: tuple[float, ...]) -> str | None:
        (spread,) = means
        if spread >= self.threshold:
            return None
        return (
            f"the {task} keys have collapsed after {step} steps: key_spread_{task} {spread:.2e} "
            f"(mean of the last {held} steps; 0 = every key the same vector). loss_{task} now sits at "
            "ln(candidates) and gives no gradient, so this task will not learn from here; see "
            "docs/training.md (why a task stays blind, and what helps)"
        )


class Throughput:
    """Clips per second over the last step and averaged since the start (wall clock)."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self._clips = 0

    def step(self, clips: int) -> tuple[float, float]:
        """Count ``clips`` finished now; returns (this step's clips/s, average clips/s)."""
        now = time.perf_counter()
        step_rate = clips / max(now - self._last, 1e-9)
        self._clips += clips
        self._last = now
        return step_rate, self._clips / max(now - self._start, 1e-9)

    @property
    def elapsed_s(self) -> float:
        return self._last - self._start
