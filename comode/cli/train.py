"""`train pretrain | supervised | export` (also `comode train ...`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from comode.cli.common import OVERRIDES_HELP, OVERWRITE_OPTION, out_console, train_app, user_errors

__all__ = ["train_pretrain", "train_supervised", "train_export"]


def _train(
    store: str,
    config: Optional[Path],
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    progress: bool,
    overrides: List[str],
    task_overrides: tuple[str, ...] = (),
) -> None:
    """Run a pretraining (or, with ``task_overrides``, another task of the same loop) and print its summary."""
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError, load_config
    from comode.train.loop import run_pretraining

    # --resume without --config continues with the run's own resolved config.
    base = config if config is not None else (out / "config.yaml" if resume else None)
    with user_errors(ConfigError, CheckpointError, FileExistsError, ValueError):
        settings = load_config(base, [*task_overrides, *overrides])
        summary = run_pretraining(
            settings, store=store, out_dir=out, resume=resume, overwrite=overwrite, show_progress=progress
        )
    final = summary.final
    loss = f", final loss {final['loss']:.4f}" if final else ""
    out_console.print(
        f"{summary.steps}/{summary.total_steps} steps ({summary.epochs_completed} epochs){loss}, "
        f"{summary.clips_per_s:.1f} clips/s, {summary.skipped_videos} videos skipped; "
        f"checkpoint {summary.checkpoint}, metrics {summary.metrics_path}"
    )
    if summary.stop_signal is not None:
        # Stopped by SIGTERM / Ctrl-C after saving: the shell's 128 + signal number, so a job
        # script can tell a stop from a finished run (comode.train.stop).
        out_console.print(f"stopped early; continue with: --resume --out {out}")
        raise typer.Exit(128 + summary.stop_signal)


@train_app.command("pretrain")
def train_pretrain(
    store: str = typer.Option(..., help="Store path or URL (from `comode extract`)."),
    config: Optional[Path] = typer.Option(
        None, help="YAML config, e.g. configs/pretrain/r3d26_ucf101.yaml (default: paper defaults)."
    ),
    out: Path = typer.Option(
        Path("runs/pretrain"), help="Run directory: config.yaml, last.pt, epoch_XXX.pt, metrics.jsonl, tensorboard/."
    ),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt."),
    overwrite: bool = OVERWRITE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Self-supervised pretraining (context matching + motion prediction). Multi-GPU: torchrun --nproc_per_node N -m comode train pretrain ..."""
    _train(store, config, out, resume=resume, overwrite=overwrite, progress=progress, overrides=overrides or [])


@train_app.command("supervised")
def train_supervised(
    store: str = typer.Option(..., help="Store path or URL (from `comode extract`)."),
    config: Optional[Path] = typer.Option(None, help="YAML config (default: paper defaults)."),
    out: Path = typer.Option(Path("runs/supervised"), help="Run directory."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt."),
    overwrite: bool = OVERWRITE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
    overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Supervised training with motion prediction as auxiliary loss (paper Table 6: CE + 0.2 x motion loss)."""
    from comode.train.config import SUPERVISED_AUX_OVERRIDES

    _train(
        store,
        config,
        out,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        overrides=overrides or [],
        task_overrides=SUPERVISED_AUX_OVERRIDES,
    )


@train_app.command("export")
def train_export(
    checkpoint: Path = typer.Argument(..., help="Training checkpoint (last.pt or epoch_XXX.pt)."),
    out: Path = typer.Argument(..., help="Output .safetensors file."),
) -> None:
    """Write the pretrained V-Network as safetensors with metadata (load with comode.load_backbone)."""
    from comode.train.checkpoint import CheckpointError
    from comode.train.export import export_backbone, read_backbone_metadata

    with user_errors(CheckpointError, ValueError, FileExistsError):
        path = export_backbone(checkpoint, out)
    metadata = read_backbone_metadata(path)
    out_console.print(f"wrote {path}: {metadata['backbone']} x{metadata['width_multiplier']}, step {metadata['step']}")
