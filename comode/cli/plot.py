"""`comode plot metrics RUN`: a run's pretext curves against clips seen, with blind levels."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from comode.cli.common import int_list, out_console, plot_app, user_errors

__all__ = ["plot_metrics"]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


@plot_app.command("metrics")
def plot_metrics(
    run: Path = typer.Argument(..., help="A `train pretrain` run folder (metrics.jsonl + config.yaml)."),
    out: Optional[Path] = typer.Option(None, help="PNG to write (default: RUN/curves.png)."),
    at: str = typer.Option("10000,25000,50000,100000", help="Clips seen at which the table gives the means."),
    window: int = typer.Option(5000, help="Clips averaged for each table row and for the verdict."),
    smooth: int = typer.Option(2000, help="Clips of the trailing mean drawn in the picture."),
) -> None:
    """Draw acc/loss of context matching and motion prediction against clips seen, each beside
    its blind level; print them at milestones and say whether each task left its blind level
    (accuracy >= 2x blind and loss below the blind loss over the last --window clips)."""
    from comode.train.curves import TASKS, draw_curves, leaves_blind_level, milestone_rows, read_curves

    milestones = int_list(at, "--at")
    with user_errors(FileNotFoundError, KeyError, ValueError):
        curves = read_curves(run)
    table = Table(title=f"{run}: means over {window:,} clips (batch {curves.batch_size})")
    table.add_column("clips")
    for task in TASKS:
        table.add_column(f"acc_{task} %")
        table.add_column("blind %")
        table.add_column(f"loss_{task}")
        table.add_column("blind")
    for row in milestone_rows(curves, at=milestones, window_clips=window):
        if not row.reached:
            table.add_row(f"{row.clips:,} (not reached: the run is at {int(curves.clips[-1]):,})", *["-"] * 8)
            continue
        cells = [f"{row.clips:,}"]
        for task in TASKS:
            v = row.values
            cells += [
                _percent(v[f"acc_{task}"]),
                _percent(v[f"blind_acc_{task}"]),
                f"{v[f'loss_{task}']:.3f}",
                f"{v[f'blind_loss_{task}']:.3f}",
            ]
        table.add_row(*cells)
    out_console.print(table)
    for task in TASKS:
        out_console.print(leaves_blind_level(curves, task=task, window_clips=window)[1])
    path = draw_curves(curves, out or run / "curves.png", smooth_clips=smooth)
    out_console.print(f"wrote {path}")
