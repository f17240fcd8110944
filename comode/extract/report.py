"""What a person sees during and after extraction: a progress bar and a short summary."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from comode.extract.pipeline import ExtractionPlan, ExtractionSummary
from comode.extract.video import VideoResult


class ExtractionProgress:
    """Callbacks for ``run_extraction``: a bar of videos with frames/s and the failure count."""

    def __init__(self, console: Console, *, enabled: bool = True):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
            TextColumn("{task.fields[fps]:>6.0f} frames/s"), TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled,
        )
        self.task = None

    def on_plan(self, plan: ExtractionPlan) -> None:
        if plan.already_complete or plan.already_failed:
            self.console.print(f"resuming: {plan.already_complete} videos already complete, "
                               f"{plan.already_failed} recorded as failed (--retry-failed to redo them)")
        self.task = self.progress.add_task("extract", total=len(plan.todo), fps=0.0, failed=0)

    def on_result(self, result: VideoResult, summary: ExtractionSummary) -> None:
        if result.error:
            self.progress.console.print(f"[red]failed[/red] {result.video_id}: {result.error}")
        self.progress.update(self.task, advance=1, fps=summary.frames_per_second, failed=len(summary.failures))

    @contextmanager
    def running(self) -> Iterator["ExtractionProgress"]:
        with self.progress:
            yield self


def print_summary(console: Console, summary: ExtractionSummary) -> None:
    table = Table(title=f"extraction into {summary.store}", show_header=False, box=None)
    table.add_row("executor", summary.executor)
    table.add_row("videos", f"{summary.total} in dataset: {summary.completed} extracted now, "
                            f"{summary.skipped_complete} already complete, {len(summary.failures)} failed now, "
                            f"{summary.skipped_failed} failed earlier")
    table.add_row("frames", f"{summary.frames} in {summary.seconds:.1f} s = {summary.frames_per_second:.0f} frames/s")
    console.print(table)
    if summary.failures:
        failures = Table(title=f"{len(summary.failures)} failed videos (recorded in the store)")
        failures.add_column("video id")
        failures.add_column("reason")
        for video_id, reason in sorted(summary.failures):
            failures.add_row(video_id, reason)
        console.print(failures)
