"""One rich progress bar for evaluation work (feature extraction, finetuning epochs)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["Bar"]


class Bar:
    """``with Bar("features", total=N, enabled=True) as bar: bar.advance(k, note="...")``.

    Disabled: does nothing (tests, logs).  ``note`` is a free text column (loss, clips/s).
    """

    def __init__(self, description: str, *, total: int, enabled: bool, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn(f"[bold]{description}[/bold]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console or Console(stderr=True), disable=not enabled,
        )
        self._task = self._progress.add_task(description, total=total, note="")

    def __enter__(self) -> "Bar":
        self._progress.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._progress.stop()

    def advance(self, amount: int = 1, *, note: str | None = None) -> None:
        fields = {} if note is None else {"note": note}
        self._progress.update(self._task, advance=amount, **fields)

    def set(self, completed: int, *, note: str | None = None, total: int | None = None) -> None:
        fields = {} if note is None else {"note": note}
        if total is not None:
            fields["total"] = total
        self._progress.update(self._task, completed=completed, **fields)
