"""`comode store info | validate | reindex` and `comode show`: look into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from comode.cli.common import app, console, out_console, store_app, user_errors

__all__ = ["store_info", "store_validate", "store_reindex", "show"]


@store_app.command("info")
def store_info(store: str = typer.Argument(..., help="Store path or URL.")) -> None:
    """Print what a store holds: dataset, settings, videos by status, size per frame."""
    from comode.store.info import describe_store

    with user_errors(ValueError):
        out_console.print(describe_store(store))


@store_app.command("validate")
def store_validate(
    store: str = typer.Argument(..., help="Store path or URL."),
    data: bool = typer.Option(
        False,
        "--data",
        help="Also read every array whole: checks each chunk's checksum "
        "(bit rot, a store copied in part, data lost in a power cut). Reads the whole store.",
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Check a store against the JSON Schemas in schemas/ and its arrays for consistency."""
    from comode.progress import Progress
    from comode.store.validate import validate_store

    with user_errors(ValueError), Progress("validate", total=0, unit="videos", enabled=progress) as bar:
        report = validate_store(store, read_data=data, on_progress=lambda done, total: bar.set(done, total=total))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.by_status.items())) or "no videos"
    if report.ok:
        out_console.print(
            f"[green]valid[/green] {store}: {report.checked} video groups ({counts}); index: {report.index}"
        )
        return
    for problem in report.problems:
        console.print(f"[red]invalid[/red] {problem}")
    raise typer.Exit(1)


@store_app.command("reindex")
def store_reindex(store: str = typer.Argument(..., help="Store path or URL.")) -> None:
    """Rebuild a store's index from its video groups (a store assembled, copied or edited by hand).

    Reads every group's metadata (O(videos): docs/performance.md has the figures); writes
    under way in other processes stay as their journals say."""
    from comode.store.index import reindex
    from comode.store.reader import open_store

    with user_errors(ValueError):
        opened = open_store(store)
        summary = reindex(store, scan=opened.scan_groups, storage_options=opened.storage_options)
    out_console.print(
        f"reindexed {store}: {summary.videos} videos indexed from {summary.groups_read} groups"
        + (f", {summary.unsettled} with a write under way" if summary.unsettled else "")
        + f", {summary.journals} journal(s) merged"
    )


@app.command("show")
def show(
    store: str = typer.Argument(..., help="Store path or URL."),
    video_id: str = typer.Argument(..., help="Video id (see `comode store info`)."),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default: <video_id>.png)."),
    panels: int = typer.Option(4, help="How many I-frames to show."),
) -> None:
    """Write a PNG of a video's I-frames with its motion vectors as arrows."""
    from comode.store import open_store
    from comode.store.show import render_motion_picture

    with user_errors(KeyError, ValueError):
        path = render_motion_picture(open_store(store), video_id, out or Path(f"{video_id}.png"), panels=panels)
    out_console.print(f"wrote {path}")
