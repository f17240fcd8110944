"""What a person sees during and after extraction: progress, failures as they come, a short summary."""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from typing import Iterator

from rich.console import Console
from rich.table import Table

from comode.extract.pipeline import ExtractionPlan, ExtractionSummary
from comode.extract.video import VideoResult
from comode.progress import Progress

logger = logging.getLogger(__name__)

# Failed videos listed by name in the summary: a Kinetics-size run may fail thousands, and
# a summary is read, not searched (the log and the store have every one).
SHOWN_FAILURES = 20


class ExtractionProgress:
    """Callbacks for ``run_extraction``: the progress of videos (frames/s, failures) and one
    log record per failed video."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.progress: Progress | None = None
        self._open = ExitStack()  # the Progress opened by on_plan, closed when running() ends

    def on_plan(self, plan: ExtractionPlan) -> None:
        if plan.already_complete or plan.already_failed:
            logger.info(
                "resuming: %d videos already complete, %d recorded as failed (--retry-failed to redo them)",
                plan.already_complete,
                plan.already_failed,
            )
        self.progress = self._open.enter_context(
            Progress("extract", total=len(plan.todo), unit="videos", enabled=self.enabled)
        )

    def on_result(self, result: VideoResult, summary: ExtractionSummary) -> None:
        if result.error:
            logger.warning("failed %s: %s", result.video_id, result.error)
        self.progress.advance(1, note=f"{summary.frames_per_second:.0f} frames/s, {len(summary.failures)} failed")

    @contextmanager
    def running(self) -> Iterator["ExtractionProgress"]:
        with self._open:
            yield self


def print_summary(console: Console, summary: ExtractionSummary) -> None:
    table = Table(title=f"extraction into {summary.store}", show_header=False, box=None)
    table.add_row("executor", summary.executor)
    table.add_row(
        "videos",
        f"{summary.total} in dataset: {summary.completed} extracted now, "
        f"{summary.skipped_complete} already complete, {len(summary.failures)} failed now, "
        f"{summary.skipped_failed} failed earlier",
    )
    table.add_row("frames", f"{summary.frames} in {summary.seconds:.1f} s = {summary.frames_per_second:.0f} frames/s")
    if summary.relabelled or summary.orphans:
        table.add_row(
            "labels",
            f"{summary.relabelled} videos relabelled from the changed annotations (not re-extracted)"
            + (
                f", {len(summary.orphans)} groups of videos no longer in the dataset left alone"
                if summary.orphans
                else ""
            ),
        )
    console.print(table)
    if summary.failures:
        failures = Table(title=f"{len(summary.failures)} failed videos (recorded in the store)")
        failures.add_column("video id")
        failures.add_column("reason")
        for video_id, reason in sorted(summary.failures)[:SHOWN_FAILURES]:
            failures.add_row(video_id, reason)
        console.print(failures)
        if len(summary.failures) > SHOWN_FAILURES:
            console.print(
                f"... and {len(summary.failures) - SHOWN_FAILURES} more: each was logged as it failed, "
                "and each failed group carries its reason (attribute 'error')"
            )
