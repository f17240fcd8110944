"""`comode plot metrics RUN`: a run's pretext curves against clips seen, with blind levels;
`comode plot compare RUN RUN...`: several runs on one budget, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from comode.cli.common import int_list, out_console, plot_app, user_errors

__all__ = ["plot_metrics", "plot_compare"]


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


@plot_app.command("compare")
def plot_compare(
    runs: List[Path] = typer.Argument(..., help="Run folders; the first is the reference the others differ from."),
    out: Path = typer.Option(Path("compare.png"), help="PNG to write."),
    at: Optional[int] = typer.Option(None, help="Clips seen at which all runs are judged (default: the shortest run)."),
    window: int = typer.Option(2000, help="Clips averaged before --at for the table and the verdicts."),
    smooth: int = typer.Option(2000, help="Clips of the trailing mean drawn in the picture."),
) -> None:
    """Judge several runs on one budget: per run, acc and loss of both tasks over the
    --window clips before --at, each beside its blind level, whether each task left it, and
    the config keys in which the run differs from the first (one change each, say); then
    draw both accuracies of all runs against clips seen."""
    from comode.train.curves import TASKS, comparison_rows, draw_comparison, read_curves

    with user_errors(FileNotFoundError, KeyError, ValueError):
        curves = [read_curves(run) for run in runs]
        rows = comparison_rows(curves, at_clips=at, window_clips=window)
    table = Table(title=f"means over the {window:,} clips before each run's budget; blind level after the slash")
    table.add_column("run")
    table.add_column("clips")
    for task in TASKS:
        table.add_column(f"acc_{task} %")
        table.add_column(f"loss_{task}")
    table.add_column("differs from the first run in")
    for row in rows:
        v = row.values
        cells = [row.run.name, f"{row.clips:,}"]
        for task in TASKS:
            mark = " (left)" if row.left[task] else ""
            cells += [
                f"{_percent(v[f'acc_{task}'])} / {_percent(v[f'blind_acc_{task}'])}{mark}",
                f"{v[f'loss_{task}']:.3f} / {v[f'blind_loss_{task}']:.3f}",
            ]
        cells.append("; ".join(row.differences) or ("(reference)" if row is rows[0] else "nothing"))
        table.add_row(*cells)
    out_console.print(table)
    out_console.print(
        "(left): accuracy >= 2x its blind level and loss at least 0.05 below the blind loss over the window"
    )
    out_console.print(f"wrote {draw_comparison(curves, out, smooth_clips=smooth)}")
