"""Command line: ``comode`` (umbrella) and the ``extract`` / ``train`` / ``evaluate`` aliases.

Thin on purpose: parse options -> build a settings object -> call one library function ->
print a summary.  Exit codes: 0 success, 1 some videos failed (recorded in the store),
2 bad usage or an unusable input/store.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(help="comode: context and motion decoupling for self-supervised video learning.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
store_app = typer.Typer(help="Inspect and validate a comode store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
# Rich wraps at 80 columns when not on a terminal: in logs and pipes keep lines whole.
console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out_console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _parse_size(text: str, option: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise _fail(f"{option} must look like WIDTHxHEIGHT, e.g. 340x256; got {text!r}") from None
    return width, height


def extract(
    dataset: str = typer.Option("folder", help="Dataset format: folder, ucf101, hmdb51, kinetics400."),
    root: Path = typer.Option(..., help="Dataset root folder (the videos)."),
    out: str = typer.Option(..., help="Output store: a local path or any fsspec URL (s3://...)."),
    annotations: Optional[Path] = typer.Option(None, help="Annotation file/folder if not in the usual place under ROOT."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler (tcp://host:8786)."),
    workers: Optional[int] = typer.Option(None, help="Local Dask workers (default: one per core); 0 = sequential, no Dask."),
    codec: str = typer.Option("mpeg2video", help="Codec of the MV stream: mpeg2video or mpeg4."),
    size: str = typer.Option("340x256", help="MV-stream size WIDTHxHEIGHT."),
    rgb_size: str = typer.Option("170x128", help="Size of the stored RGB stream and I-frames."),
    resize: str = typer.Option("stretch", help="stretch (ignore aspect) or crop (keep aspect, centre-crop)."),
    gop: int = typer.Option(12, help="I-frame distance."),
    quality: int = typer.Option(5, help="Fixed quantiser of the MV stream (1 best .. 31)."),
    timeout: float = typer.Option(600.0, help="Per-video time limit in seconds."),
    mv_backend: str = typer.Option("pyav", help="pyav (default) or mvextractor: same vectors, cross-check."),
    limit: Optional[int] = typer.Option(None, help="Only the first N videos (sorted by id)."),
    retry_failed: bool = typer.Option(False, help="Retry videos recorded as failed by an earlier run."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Re-encode videos, read I-frames and motion vectors, and write them to a Zarr store."""
    from comode.extract.datasets import DatasetError, load_dataset
    from comode.extract.executors import make_executor
    from comode.extract.pipeline import run_extraction
    from comode.extract.report import ExtractionProgress, print_summary
    from comode.extract.settings import ExtractSettings

    width, height = _parse_size(size, "--size")
    rgb_width, rgb_height = _parse_size(rgb_size, "--rgb-size")
    try:
        settings = ExtractSettings(codec=codec, gop=gop, width=width, height=height, resize=resize,
                                   quality=quality, rgb_width=rgb_width, rgb_height=rgb_height,
                                   timeout_s=timeout, mv_backend=mv_backend)
        index = load_dataset(dataset, root, annotations=annotations)
    except (ValueError, DatasetError) as error:
        raise _fail(str(error)) from None
    console.print(f"{index.name}: {len(index.videos)} videos, {len(index.classes)} classes, "
                  f"splits {list(index.split_names)}" + (f", {len(index.missing)} annotated but missing" if index.missing else ""))
    if not index.videos:
        raise _fail(f"no videos found under {root}")
    display = ExtractionProgress(console, enabled=progress)
    executor = make_executor(scheduler=scheduler, workers=workers)
    try:
        with display.running():
            summary = run_extraction(index, out, settings, executor, retry_failed=retry_failed, limit=limit,
                                     on_plan=display.on_plan, on_result=display.on_result)
    except ValueError as error:
        raise _fail(str(error)) from None
    finally:
        executor.close()
    print_summary(console, summary)
    raise typer.Exit(0 if summary.ok else 1)


app.command("extract")(extract)
extract_app = typer.Typer(pretty_exceptions_enable=False)
extract_app.command()(extract)


@store_app.command("info")
def store_info(store: str = typer.Argument(..., help="Store path or URL.")) -> None:
    """Print what a store holds: dataset, settings, videos by status, size per frame."""
    from comode.store.info import describe_store

    try:
        out_console.print(describe_store(store))
    except ValueError as error:
        raise _fail(str(error)) from None


@store_app.command("validate")
def store_validate(store: str = typer.Argument(..., help="Store path or URL.")) -> None:
    """Check a store against the JSON Schemas in schemas/ and its arrays for consistency."""
    from comode.store.validate import validate_store

    try:
        report = validate_store(store)
    except ValueError as error:
        raise _fail(str(error)) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.by_status.items())) or "no videos"
    if report.ok:
        out_console.print(f"[green]valid[/green] {store}: {report.checked} video groups ({counts})")
        return
    for problem in report.problems:
        console.print(f"[red]invalid[/red] {problem}")
    raise typer.Exit(1)


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

    try:
        path = render_motion_picture(open_store(store), video_id, out or Path(f"{video_id}.png"), panels=panels)
    except (KeyError, ValueError) as error:
        raise _fail(str(error).strip('"')) from None
    out_console.print(f"wrote {path}")


train_app = typer.Typer(help="Pretrain a V-Network (context and motion decoupling) and export it.",
                        no_args_is_help=True, pretty_exceptions_enable=False)


def _train(*, store: str, config: Optional[Path], out: Path, resume: bool, progress: bool,
           overrides: List[str], task_overrides: tuple[str, ...]) -> None:
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError, load_config
    from comode.train.loop import run_pretraining

    # --resume without --config continues with the run's own resolved config.
    base = config if config is not None else (out / "config.yaml" if resume else None)
    try:
        settings = load_config(base, [*task_overrides, *overrides])
        summary = run_pretraining(settings, store=store, out_dir=out, resume=resume, show_progress=progress)
    except (ConfigError, CheckpointError, FileExistsError, ValueError) as error:
        raise _fail(str(error)) from None
    final = summary.final
    loss = f", final loss {final['loss']:.4f}" if final else ""
    out_console.print(f"{summary.steps}/{summary.total_steps} steps ({summary.epochs_completed} epochs){loss}, "
                      f"{summary.clips_per_s:.1f} clips/s, {summary.skipped_videos} videos skipped; "
                      f"checkpoint {summary.checkpoint}, metrics {summary.metrics_path}")


_OVERRIDES_HELP = "Config overrides key=value, e.g. optim.epochs=10 data.batch_size=32 (YAML values)."


@train_app.command("pretrain")
def train_pretrain(
    store: str = typer.Option(..., help="Store path or URL (from `comode extract`)."),
    config: Optional[Path] = typer.Option(None, help="YAML config, e.g. configs/pretrain/r3d26_ucf101.yaml (default: paper defaults)."),
    out: Path = typer.Option(Path("runs/pretrain"), help="Run directory: config.yaml, last.pt, epoch_XXX.pt, metrics.jsonl, tensorboard/."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    overrides: Optional[List[str]] = typer.Argument(None, help=_OVERRIDES_HELP),
) -> None:
    """Self-supervised pretraining (context matching + motion prediction). Multi-GPU: torchrun --nproc_per_node N -m comode train pretrain ..."""
    _train(store=store, config=config, out=out, resume=resume, progress=progress, overrides=overrides or [],
           task_overrides=())


@train_app.command("supervised")
def train_supervised(
    store: str = typer.Option(..., help="Store path or URL (from `comode extract`)."),
    config: Optional[Path] = typer.Option(None, help="YAML config (default: paper defaults)."),
    out: Path = typer.Option(Path("runs/supervised"), help="Run directory."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    overrides: Optional[List[str]] = typer.Argument(None, help=_OVERRIDES_HELP),
) -> None:
    """Supervised training with motion prediction as auxiliary loss (paper Table 6: CE + 0.2 x motion loss)."""
    from comode.train.config import SUPERVISED_AUX_OVERRIDES

    _train(store=store, config=config, out=out, resume=resume, progress=progress, overrides=overrides or [],
           task_overrides=SUPERVISED_AUX_OVERRIDES)


@train_app.command("export")
def train_export(
    checkpoint: Path = typer.Argument(..., help="Training checkpoint (last.pt or epoch_XXX.pt)."),
    out: Path = typer.Argument(..., help="Output .safetensors file."),
) -> None:
    """Write the pretrained V-Network as safetensors with metadata (load with comode.load_backbone)."""
    from comode.train.checkpoint import CheckpointError
    from comode.train.export import export_backbone, read_backbone_metadata

    try:
        path = export_backbone(checkpoint, out)
    except (CheckpointError, ValueError) as error:
        raise _fail(str(error)) from None
    metadata = read_backbone_metadata(path)
    out_console.print(f"wrote {path}: {metadata['backbone']} x{metadata['width_multiplier']}, step {metadata['step']}")
evaluate_app = typer.Typer(help="Evaluation (arrives with the evaluation issue).", pretty_exceptions_enable=False)


@evaluate_app.callback(invoke_without_command=True)
def _evaluate_not_yet() -> None:
    raise _fail("`evaluate` is not implemented yet in this version of comode (evaluation is its own issue).")


app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
