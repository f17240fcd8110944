"""The one progress display of every long command: extraction, validation, pretraining,
feature extraction, finetuning, sample generation.

    with Progress("pretrain", total=420, unit="steps") as bar:
        for step in ...:
            bar.set(step, note=f"loss {loss:.4f}")     # or bar.advance(1, note=...)

On a terminal: a rich bar (count, note, elapsed, ETA) on the console that log records use
(:func:`comode.logs.console`), so log lines print above it.  In every case, also plain
lines on the ``comode.progress`` logger -- ``pretrain: 120/420 steps (28.6%), loss 4.1234,
elapsed 0:01:02, ETA 0:02:40`` -- at the start, at most every ``COMODE_PROGRESS_SECONDS``
seconds (default 30) and at the end: what a batch job's log (and every run's log file)
shows.  On a terminal the console leaves those lines out (the bar shows the same).
Disabled (``enabled=False``): no bar; the lines still reach the log.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from comode.logs import PROGRESS_LOGGER, console

__all__ = ["Progress"]

logger = logging.getLogger(PROGRESS_LOGGER)


def _interval_s() -> float:
    return float(os.environ.get("COMODE_PROGRESS_SECONDS", "30"))


class Progress:
    """Progress of ``total`` units of work named ``description``.

    Args:
        description: what is being done ("extract", "pretrain", ...).
        total: units to do (0 or None: unknown yet; :meth:`set` can give it later).
        completed: units already done (a resumed run).
        unit: the units' name in the plain lines ("videos", "steps").
        enabled: draw the bar on a terminal.
    """

    def __init__(
        self, description: str, *, total: int | None, completed: int = 0, unit: str = "", enabled: bool = True
    ) -> None:
        self.description, self.unit = description, unit
        self.total, self.completed, self.note = total or None, completed, ""
        self._first = completed
        self._start = self._last_line = None
        self._bar = RichProgress(
            TextColumn(f"[bold]{description}[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console(),
            disable=not (enabled and console().is_terminal),
        )
        self._task = self._bar.add_task(description, total=self.total, completed=completed, note="")

    def __enter__(self) -> "Progress":
        self._start = time.monotonic()
        self._bar.start()
        self._line(force=True)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.stop()
        self._line(force=True, final=exc_info[0] is None)

    def advance(self, amount: int = 1, *, note: str | None = None) -> None:
        """``amount`` more units done."""
        self.set(self.completed + amount, note=note)

    def set(self, completed: int, *, note: str | None = None, total: int | None = None) -> None:
        """``completed`` units done in all; ``note`` replaces the free text (loss, rate...)."""
        self.completed = completed
        if note is not None:
            self.note = note
        if total is not None:
            self.total = total or None
        self._bar.update(self._task, completed=completed, note=self.note, total=self.total)
        if not (self.total and completed >= self.total):  # the last line comes from __exit__
            self._line()

    def line(self) -> str:
        """The plain progress line as of now."""
        parts = [
            f"{self.completed}" + (f"/{self.total}" if self.total else "") + (f" {self.unit}" if self.unit else "")
        ]
        if self.total:
            parts[0] += f" ({100 * self.completed / self.total:.1f}%)"
        if self.note:
            parts.append(self.note)
        elapsed = time.monotonic() - (self._start or time.monotonic())
        parts.append(f"elapsed {timedelta(seconds=round(elapsed))}")
        done_now = self.completed - self._first
        if self.total and done_now > 0 and self.completed < self.total:
            parts.append(f"ETA {timedelta(seconds=round(elapsed / done_now * (self.total - self.completed)))}")
        return f"{self.description}: " + ", ".join(parts)

    def _line(self, *, force: bool = False, final: bool = False) -> None:
        now = time.monotonic()
        if not force and self._last_line is not None and now - self._last_line < _interval_s():
            return
        self._last_line = now
        logger.info(self.line() + (" -- done" if final else ""))
