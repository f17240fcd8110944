"""Command line: ``comode`` (umbrella) and the ``extract`` / ``train`` / ``evaluate`` aliases.

Thin on purpose: parse options -> build a settings object -> call one library function ->
print a summary.  Exit codes: 0 success, 1 some videos failed (recorded in the store),
2 bad usage or an unusable input/store, 3 the store's disk is full (free space and run the
same command again: it resumes).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console

from comode import logs

app = typer.Typer(help="comode: context and motion decoupling for self-supervised video learning.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
store_app = typer.Typer(help="Inspect, validate and reindex a comode store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
console = logs.console()  # stderr: messages, log records and progress bars share it
# Rich wraps at 80 columns when not on a terminal: in logs and pipes keep lines whole.
out_console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
logger = logging.getLogger("comode.cli")

# --log-level: on the umbrella and on each alias (before the subcommand: `train --log-level
# DEBUG pretrain ...`), and on `extract` itself (an alias with one command); also COMODE_LOG_LEVEL.
_LOG_LEVEL_OPTION = typer.Option("INFO", "--log-level", envvar="COMODE_LOG_LEVEL",
                                 help="Log level of comode's messages: DEBUG, INFO, WARNING, ERROR.")


def _setup_logging(level: str | None) -> None:
    try:
        logs.setup(level)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log-level") from None


@app.callback()
def _main(log_level: str = _LOG_LEVEL_OPTION) -> None:
    """comode: context and motion decoupling for self-supervised video learning."""
    _setup_logging(log_level)


EXIT_STORE_FULL = 3


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def _user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Errors the user can fix (a bad checkpoint, config or store) end the command with their
    message and exit code 2 instead of a traceback."""
    try:
        yield
    except kinds as error:
        # str() of a KeyError is the repr of its message (quoted); show the message itself.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise _fail(str(message)) from None


def _parse_size(text: str, option: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise _fail(f"{option} must look like WIDTHxHEIGHT, e.g. 340x256; got {text!r}") from None
    return width, height


def extract(
    dataset: str = typer.Option("folder", help="Dataset format: folder, ucf101, hmdb51, kinetics400, sample."),
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
    memory_limit: int = typer.Option(4096, help="Per-video address-space limit of FFmpeg in MiB (0: none); a video over it is recorded as failed."),
    mv_backend: str = typer.Option("pyav", help="pyav (default) or mvextractor: same vectors, cross-check."),
    limit: Optional[int] = typer.Option(None, help="Only the first N videos (sorted by id)."),
    retry_failed: bool = typer.Option(False, help="Retry videos recorded as failed by an earlier run."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    log_level: Optional[str] = typer.Option(None, "--log-level", envvar="COMODE_LOG_LEVEL",
                                            help="Log level of comode's messages (default: INFO, or the "
                                                 "umbrella's --log-level)."),
) -> None:
    """Re-encode videos, read I-frames and motion vectors, and write them to a Zarr store.

    The run's log goes to the console and to <store>.log beside a local store (./<name>.log
    for a remote one)."""
    _setup_logging(log_level)
    from comode.extract.datasets import DatasetError, load_dataset
    from comode.extract.executors import make_executor
    from comode.extract.settings import ExtractSettings

    width, height = _parse_size(size, "--size")
    rgb_width, rgb_height = _parse_size(rgb_size, "--rgb-size")
    try:
        settings = ExtractSettings(codec=codec, gop=gop, width=width, height=height, resize=resize,
                                   quality=quality, rgb_width=rgb_width, rgb_height=rgb_height,
                                   timeout_s=timeout, mv_backend=mv_backend, memory_limit_mb=memory_limit)
        index = load_dataset(dataset, root, annotations=annotations)
    except (ValueError, DatasetError) as error:
        raise _fail(str(error)) from None
    logger.info(f"{index.name}: {len(index.videos)} videos, {len(index.classes)} classes, "
                f"splits {list(index.split_names)}" + (f", {len(index.missing)} annotated but missing" if index.missing else ""))
    if not index.videos:
        raise _fail(f"no videos found under {root}")
    summary = _extract_with_progress(index, out, settings, make_executor(scheduler=scheduler, workers=workers),
                                     progress=progress, retry_failed=retry_failed, limit=limit)
    raise typer.Exit(0 if summary.ok else 1)


def _extract_with_progress(index, out: str, settings, executor, *, progress: bool, **options):
    """Run an extraction with its progress display and summary (closing ``executor``); a full
    disk exits with EXIT_STORE_FULL, an unusable store with 2."""
    from comode.extract.pipeline import run_extraction
    from comode.extract.report import ExtractionProgress, print_summary
    from comode.store.writer import StoreFullError

    display = ExtractionProgress(enabled=progress)
    try:
        with logs.to_file(extraction_log(out)) as log_path, display.running():
            logger.info("extracting into %s (log: %s)", out, log_path)
            summary = run_extraction(index, out, settings, executor, on_plan=display.on_plan,
                                     on_result=display.on_result, **options)
    except StoreFullError as error:  # not bad usage: the run stopped, the same command resumes
        raise _fail(str(error), code=EXIT_STORE_FULL) from None
    except ValueError as error:
        raise _fail(str(error)) from None
    finally:
        executor.close()
    print_summary(console, summary)
    return summary


def extraction_log(store: str) -> Path:
    """Where an extraction's log goes: ``<store>.log`` beside a local store, ``./<name>.log``
    for a remote one (appended to by every run into that store)."""
    from comode.store.location import is_local, local_path

    if is_local(store):
        return Path(local_path(store).rstrip("/") + ".log")
    return Path.cwd() / f"{Path(store.rstrip('/')).name or 'store'}.log"


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
def store_validate(
    store: str = typer.Argument(..., help="Store path or URL."),
    data: bool = typer.Option(False, "--data", help="Also read every array whole: checks each chunk's checksum "
                              "(bit rot, a store copied in part, data lost in a power cut). Reads the whole store."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Check a store against the JSON Schemas in schemas/ and its arrays for consistency."""
    from comode.progress import Progress
    from comode.store.validate import validate_store

    try:
        with Progress("validate", total=0, unit="videos", enabled=progress) as bar:
            report = validate_store(store, read_data=data,
                                    on_progress=lambda done, total: bar.set(done, total=total))
    except ValueError as error:
        raise _fail(str(error)) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.by_status.items())) or "no videos"
    if report.ok:
        out_console.print(f"[green]valid[/green] {store}: {report.checked} video groups ({counts}); "
                          f"index: {report.index}")
        return
    for problem in report.problems:
        console.print(f"[red]invalid[/red] {problem}")
    raise typer.Exit(1)


@store_app.command("reindex")
def store_reindex(store: str = typer.Argument(..., help="Store path or URL.")) -> None:
    """Rebuild a store's index from its video groups (a store assembled, copied or edited by hand).

    Reads every group's metadata (minutes for 100k+ videos); writes under way in other
    processes stay as their journals say."""
    from comode.store.index import reindex
    from comode.store.reader import open_store

    try:
        opened = open_store(store)
        summary = reindex(store, scan=opened.scan_groups, storage_options=opened.storage_options)
    except ValueError as error:
        raise _fail(str(error)) from None
    out_console.print(f"reindexed {store}: {summary.videos} videos indexed from {summary.groups_read} groups"
                      + (f", {summary.unsettled} with a write under way" if summary.unsettled else "")
                      + f", {summary.journals} journal(s) merged")


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

    with _user_errors(KeyError, ValueError):
        path = render_motion_picture(open_store(store), video_id, out or Path(f"{video_id}.png"), panels=panels)
    out_console.print(f"wrote {path}")


@app.command("sample")
def sample(
    out: Path = typer.Option(..., help="Folder to write the videos, labels.csv and sample.json to (empty or new)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same frames."),
    videos_per_class: int = typer.Option(48, help="Clips per motion class, spread evenly over the scenes."),
    frames: int = typer.Option(96, help="Frames per clip (25 fps; a pretraining sample spans 70)."),
    size: str = typer.Option("170x128", help="Frame size WIDTHxHEIGHT (even numbers)."),
    scenes: str = typer.Option(",".join(("astronaut", "cat", "coffee", "rocket")),
                               help="Comma-separated scenes: astronaut, cat, coffee, rocket, hubble, camera."),
    motions: str = typer.Option("all", help="Comma-separated motion patterns (circle_ccw, circle_cw, lissajous, oscillate_x, oscillate_y, pulse) or 'all'."),
    test_fraction: float = typer.Option(0.4, help="Share of each (motion, scene) cell in the test split."),
    camera: bool = typer.Option(False, help="Pan the camera slowly (a nuisance independent of both labels; default: static)."),
    workers: Optional[int] = typer.Option(None, help="Processes (default: one per core); 0 = in this process."),
    overwrite: bool = typer.Option(False, help="Replace an earlier sample set in --out."),
    store: Optional[str] = typer.Option(None, help="Also extract the set into this store and measure its motion-vector coverage."),
    measure: bool = typer.Option(False, help="Extract into a temporary store just to measure motion-vector coverage."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Generate the built-in labelled sample dataset: real-photo scenes x motion patterns (format 'sample')."""
    import tempfile
    import time

    from rich.table import Table

    from comode.sampleset import MOTIONS, SampleSpec, generate_sample, near_duplicate_share
    from comode.progress import Progress

    width, height = _parse_size(size, "--size")
    try:
        spec = SampleSpec(seed=seed, videos_per_class=videos_per_class, frames=frames, width=width, height=height,
                          scenes=tuple(x.strip() for x in scenes.split(",") if x.strip()),
                          motions=MOTIONS if motions == "all" else tuple(x.strip() for x in motions.split(",") if x.strip()),
                          test_fraction=test_fraction, camera=camera)
    except ValueError as error:
        raise _fail(str(error)) from None
    start = time.perf_counter()
    try:
        with Progress("generate", total=None, unit="clips", enabled=progress) as bar:
            clips = generate_sample(spec, out, workers=workers, overwrite=overwrite,
                                    on_clip=lambda clip, done, total: bar.set(done, total=total))
    except (FileExistsError, ValueError) as error:
        raise _fail(str(error)) from None
    seconds = time.perf_counter() - start
    megabytes = sum(f.stat().st_size for f in out.rglob("*.mp4")) / 1e6
    table = Table(title=f"sample set in {out}", show_header=False, box=None)
    table.add_row("clips", f"{len(clips)} ({sum(c.split == 'train' for c in clips)} train, "
                           f"{sum(c.split == 'test' for c in clips)} test), {spec.frames} frames at "
                           f"{spec.width}x{spec.height}, {spec.fps} fps, {megabytes:.1f} MB")
    if not any(c.split == "test" for c in clips):
        table.add_row("[yellow]note", f"no test clips: a (motion, scene) pair needs 2 clips for one to be test "
                                      f"(--videos-per-class >= {2 * len(spec.scenes)})")
    table.add_row("motions", ", ".join(spec.motions))
    table.add_row("hard negatives", f"{near_duplicate_share(clips):.1%} move like their positive window "
                                    "(analytic velocities; see comode.sampleset.near_duplicate_share)")
    table.add_row("scenes", ", ".join(spec.scenes))
    table.add_row("generated", f"in {seconds:.1f} s = {len(clips) * spec.frames / seconds:.0f} frames/s")
    table.add_row("extract", f"comode extract --dataset sample --root {out} --out STORE.zarr")
    out_console.print(table)
    if store is None and not measure:
        return
    with tempfile.TemporaryDirectory(prefix="comode-sample-") as tmp:
        _extract_and_measure(out, store or str(Path(tmp) / "sample.zarr"), workers=workers, progress=progress)


def _extract_and_measure(root: Path, store: str, *, workers: Optional[int], progress: bool) -> None:
    """Extract a sample set into ``store`` and print the share of P-frame blocks that carry a vector."""
    from rich.table import Table

    from comode.extract.datasets import load_dataset
    from comode.extract.executors import make_executor
    from comode.sampleset import mv_block_coverage
    from comode.extract.settings import ExtractSettings

    summary = _extract_with_progress(load_dataset("sample", root), store, ExtractSettings(),
                                     make_executor(workers=workers), progress=progress)
    coverage = mv_block_coverage(store)
    table = Table(title="motion-vector coverage: P-frame 16x16 blocks with a non-zero vector", show_header=False,
                  box=None)
    table.add_row("all", f"{coverage.share:.1%} of {coverage.blocks} blocks ({coverage.p_frames} P-frames, "
                         f"{coverage.videos} videos)")
    for name, share in coverage.by_label.items():
        table.add_row(name, f"{share:.1%}")
    out_console.print(table)
    if not summary.ok:
        raise typer.Exit(1)


train_app = typer.Typer(help="Pretrain a V-Network (context and motion decoupling) and export it.",
                        no_args_is_help=True, pretty_exceptions_enable=False)
train_app.callback()(_main)


def _train(*, store: str, config: Optional[Path], out: Path, resume: bool, progress: bool,
           overrides: List[str], task_overrides: tuple[str, ...]) -> None:
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError, load_config
    from comode.train.loop import run_pretraining

    # --resume without --config continues with the run's own resolved config.
    base = config if config is not None else (out / "config.yaml" if resume else None)
    with _user_errors(ConfigError, CheckpointError, FileExistsError, ValueError):
        settings = load_config(base, [*task_overrides, *overrides])
        summary = run_pretraining(settings, store=store, out_dir=out, resume=resume, show_progress=progress)
    final = summary.final
    loss = f", final loss {final['loss']:.4f}" if final else ""
    out_console.print(f"{summary.steps}/{summary.total_steps} steps ({summary.epochs_completed} epochs){loss}, "
                      f"{summary.clips_per_s:.1f} clips/s, {summary.skipped_videos} videos skipped; "
                      f"checkpoint {summary.checkpoint}, metrics {summary.metrics_path}")


# The demo/ablation config, found from this file so the command works from any folder of a
# source checkout (an installed wheel has no configs/: the command then asks for --config).
_DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "demo_cpu.yaml"
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

    with _user_errors(CheckpointError, ValueError):
        path = export_backbone(checkpoint, out)
    metadata = read_backbone_metadata(path)
    out_console.print(f"wrote {path}: {metadata['backbone']} x{metadata['width_multiplier']}, step {metadata['step']}")
evaluate_app = typer.Typer(help="Evaluate a pretrained V-Network: retrieval, linear probe, finetuning, comparison.",
                           no_args_is_help=True, pretty_exceptions_enable=False)
evaluate_app.callback()(_main)

EVALUATE_LOG = "evaluate.log"  # in every evaluation's output folder, beside its report
_CHECKPOINT_HELP = ("Training checkpoint (runs/X/last.pt) or exported .safetensors; 'random' = random init "
                    "(with --backbone, --width-multiplier, --seed).")


def _random_init(config: Optional[Path], backbone: Optional[str], width_multiplier: Optional[float]):
    """(backbone, width, clip geometry) of a random init: explicit options, else the pretraining
    config's, else the paper's r3d_26 at full width on 16 x 4 frames of 112 px."""
    from comode.evaluate.source import ClipGeometry
    from comode.train.config import ConfigError, load_config

    if config is None:
        return backbone or "r3d_26", 1.0 if width_multiplier is None else width_multiplier, None
    try:
        settings = load_config(config)
    except ConfigError as error:
        raise _fail(str(error)) from None
    return (backbone or settings.model.backbone,
            settings.model.width_multiplier if width_multiplier is None else width_multiplier,
            ClipGeometry.of_config(settings.data))


def _eval_out(out: Optional[Path], checkpoint: str, store: str, *, backbone: str, width_multiplier: float,
              seed: int, kind: str = "eval", label_set: Optional[str] = None) -> Path:
    """Default output folder: <checkpoint folder>/<kind>/<checkpoint stem>/<store name>[-<label set>]
    (so epoch_010.pt and last.pt of one run keep separate reports), or runs/random-.../<kind>/<store name>."""
    if out is not None:
        return out
    store_name = Path(store.rstrip("/")).stem or "store"
    if checkpoint.lower() in ("random", "none", "scratch"):
        base = Path("runs") / f"random-{backbone}-x{width_multiplier:g}-seed{seed}" / kind
    else:
        base = Path(checkpoint).parent / kind / Path(checkpoint).stem
    return base / (f"{store_name}-{label_set}" if label_set else store_name)


def _check_device(device: Optional[str]) -> None:
    if device is None:
        return
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise _fail(f"--device {device!r} is not a torch device (cuda, cuda:1, cpu)") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise _fail(f"--device {device}: CUDA is not available on this machine (use --device cpu)")


def _print_report(report: dict, path: Path) -> None:
    from comode.evaluate.report import report_table

    out_console.print(report_table(report))
    failed = report.get("counts", {}).get("failed", 0)
    if failed:
        console.print(f"[yellow]{failed} videos could not be read and were not evaluated[/yellow]: "
                      + ", ".join(list(report.get("failed", {}))[:10]))
    out_console.print(f"report {path}")


# Options shared by the evaluation commands (one definition, one help text).
_EVAL_OUT_OPTION = typer.Option(None, help="Output folder (default: <checkpoint folder>/eval/<checkpoint stem>/<store name>).")
_RANDOM_BACKBONE_OPTION = typer.Option(None, help="Backbone of a random init (default: --config's, else r3d_26; ignored for a checkpoint).")
_RANDOM_WIDTH_OPTION = typer.Option(None, help="Width of a random init (default: --config's, else 1.0; ignored for a checkpoint).")
_RANDOM_SEED_OPTION = typer.Option(0, help="Seed of a random init.")
_RANDOM_CONFIG_OPTION = typer.Option(None, help="Pretraining config a random init is the floor of: its backbone, width and training clip "
                                     "(frames, stride, size), e.g. configs/pretrain/demo_cpu.yaml (ignored for a checkpoint, which brings its own).")
_CLIP_SIZE_OPTION = typer.Option(None, help="Clip side after the centre crop (default: the training clip's; 112 for a random init without --config).")
_BATCH_VIDEOS_OPTION = typer.Option(8, help="Videos per forward pass (x10 clips).")
_EVAL_WORKERS_OPTION = typer.Option(2, help="DataLoader processes decoding clips (0: in this process).")
_DEVICE_OPTION = typer.Option(None, help="cuda / cpu (default: cuda when present).")


@evaluate_app.command("retrieval")
def evaluate_retrieval(
    store: str = typer.Option(..., help="Labelled store (UCF101 / HMDB51 / folder) with a train/test split."),
    checkpoint: str = typer.Option(..., help=_CHECKPOINT_HELP),
    split: str = typer.Option("1", help="Store split: its test videos query its train videos (papers: split 1)."),
    label_set: Optional[str] = typer.Option(None, help="Judge hits by one of the store's extra label sets (e.g. scene of the sample set) instead of its primary labels."),
    out: Optional[Path] = _EVAL_OUT_OPTION,
    center: bool = typer.Option(False, help="Subtract the gallery mean before cosine similarity (moves R@1 by points; recorded in the report)."),
    normalize: bool = typer.Option(True, help="Cosine similarity (L2-normalised features); --no-normalize: dot product."),
    other_than: Optional[str] = typer.Option(None, help="A label set (e.g. scene): each query searches only gallery videos with another label there (scene-disjoint retrieval)."),
    backbone: Optional[str] = _RANDOM_BACKBONE_OPTION,
    width_multiplier: Optional[float] = _RANDOM_WIDTH_OPTION,
    seed: int = _RANDOM_SEED_OPTION,
    config: Optional[Path] = _RANDOM_CONFIG_OPTION,
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache (default: <out>/features)."),
    size: Optional[int] = _CLIP_SIZE_OPTION,
    batch_videos: int = _BATCH_VIDEOS_OPTION,
    workers: int = _EVAL_WORKERS_OPTION,
    device: Optional[str] = _DEVICE_OPTION,
    picture: int = typer.Option(4, help="Queries shown in retrieval.png (0: no picture)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Video retrieval: test videos query train videos by cosine similarity of 10-clip features; R@1/5/10/20."""
    from comode.evaluate.retrieval import run_retrieval
    from comode.train.checkpoint import CheckpointError

    _check_device(device)
    backbone, width_multiplier, geometry = _random_init(config, backbone, width_multiplier)
    out_dir = _eval_out(out, checkpoint, store, backbone=backbone, width_multiplier=width_multiplier, seed=seed,
                        label_set=label_set)
    with _user_errors(CheckpointError, ValueError, KeyError), logs.to_file(out_dir / EVALUATE_LOG):
        result = run_retrieval(store, checkpoint, out_dir=out_dir, split=split, label_set=label_set, center=center,
                               normalize=normalize, backbone=backbone, width_multiplier=width_multiplier, seed=seed, cache_dir=cache_dir,
                               size=size, videos_per_batch=batch_videos, workers=workers, device=device,
                               picture_queries=picture, show_progress=progress, geometry=geometry,
                               other_than=other_than)
    _print_report(result.report, result.report_path)
    if result.picture_path is not None:
        out_console.print(f"picture {result.picture_path}")


@evaluate_app.command("linear")
def evaluate_linear(
    store: str = typer.Option(..., help="Labelled store with a train/test split."),
    checkpoint: str = typer.Option(..., help=_CHECKPOINT_HELP),
    split: str = typer.Option("1", help="Store split: fit on its train videos, score its test videos."),
    label_set: Optional[str] = typer.Option(None, help="Classify one of the store's extra label sets (e.g. scene of the sample set) instead of its primary labels."),
    out: Optional[Path] = _EVAL_OUT_OPTION,
    l2: float = typer.Option(1e-3, help="L2 penalty of the logistic regression."),
    backbone: Optional[str] = _RANDOM_BACKBONE_OPTION,
    width_multiplier: Optional[float] = _RANDOM_WIDTH_OPTION,
    seed: int = _RANDOM_SEED_OPTION,
    config: Optional[Path] = _RANDOM_CONFIG_OPTION,
    cache_dir: Optional[Path] = typer.Option(None, help="Feature cache (default: <out>/features, shared with retrieval)."),
    size: Optional[int] = _CLIP_SIZE_OPTION,
    batch_videos: int = _BATCH_VIDEOS_OPTION,
    workers: int = _EVAL_WORKERS_OPTION,
    device: Optional[str] = _DEVICE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Linear probe: logistic regression on frozen 10-clip features; test top-1/top-5."""
    from comode.evaluate.linear import LinearProbeSpec, run_linear
    from comode.train.checkpoint import CheckpointError

    _check_device(device)
    backbone, width_multiplier, geometry = _random_init(config, backbone, width_multiplier)
    out_dir = _eval_out(out, checkpoint, store, backbone=backbone, width_multiplier=width_multiplier, seed=seed,
                        label_set=label_set)
    with _user_errors(CheckpointError, ValueError, KeyError), logs.to_file(out_dir / EVALUATE_LOG):
        result = run_linear(store, checkpoint, out_dir=out_dir, split=split, label_set=label_set, spec=LinearProbeSpec(l2=l2),
                            backbone=backbone, width_multiplier=width_multiplier, seed=seed, cache_dir=cache_dir,
                            size=size, videos_per_batch=batch_videos, workers=workers, device=device, show_progress=progress,
                            geometry=geometry)
    _print_report(result.report, result.report_path)


@evaluate_app.command("finetune")
def evaluate_finetune(
    store: str = typer.Option(..., help="Labelled store (UCF101 / HMDB51 / folder) with a train/test split."),
    checkpoint: str = typer.Option(..., help=_CHECKPOINT_HELP + " 'random' trains from scratch (Table 2 baseline)."),
    config: Optional[Path] = typer.Option(None, help="YAML config, e.g. configs/evaluate/finetune_ucf101.yaml (default: UCF101 settings)."),
    out: Optional[Path] = typer.Option(None, help="Run folder: config.yaml, last.pt, metrics.jsonl, finetune.json (default: <checkpoint folder>/finetune/<checkpoint stem>/<store name>)."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt."),
    backbone: str = typer.Option("r3d_26", help="Backbone when training from scratch (ignored for a checkpoint)."),
    width_multiplier: float = typer.Option(1.0, help="Width when training from scratch (ignored for a checkpoint)."),
    device: Optional[str] = _DEVICE_OPTION,
    progress: bool = typer.Option(True, help="Show a progress bar."),
    overrides: Optional[List[str]] = typer.Argument(None, help="Config overrides key=value, e.g. epochs=10 batch_size=16."),
) -> None:
    """Supervised finetuning of the V-Network (paper Sec. 4.1), 10-clip test, top-1/top-5."""
    from comode.evaluate.finetune import load_finetune_config, run_finetune
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError

    _check_device(device)
    try:
        settings = load_finetune_config(config, overrides or [])
    except ConfigError as error:
        raise _fail(str(error)) from None
    out_dir = out if out is not None else _eval_out(None, checkpoint, store, backbone=backbone,
                                                     width_multiplier=width_multiplier, seed=settings.seed,
                                                     kind="finetune")
    if resume and config is None and (out_dir / "config.yaml").exists():
        # --resume without --config continues with the run's own config, to the end unless told otherwise.
        try:
            settings = load_finetune_config(out_dir / "config.yaml", ["stop_after_epoch=null", *(overrides or [])])
        except ConfigError as error:
            raise _fail(str(error)) from None
    with _user_errors(CheckpointError, ConfigError, FileExistsError, ValueError, KeyError), \
            logs.to_file(out_dir / EVALUATE_LOG):
        result = run_finetune(settings, store=store, checkpoint=checkpoint, out_dir=out_dir, resume=resume,
                              backbone=backbone, width_multiplier=width_multiplier, device=device,
                              show_progress=progress)
    _print_report(result.report, result.report_path)
    if not result.finished:
        out_console.print(f"stopped after epoch {result.epochs_completed} of {settings.epochs} (no test yet); "
                          f"continue with: evaluate finetune --store {store} --checkpoint {checkpoint} --out {out_dir} --resume")


@evaluate_app.command("compare")
def evaluate_compare(
    runs: List[Path] = typer.Argument(..., help="Reports (x/retrieval.json), evaluation folders, or reference files (YAML/JSON with name and metrics)."),
    out: Optional[Path] = typer.Option(None, help="Also write the table as text to this file."),
) -> None:
    """Put several evaluations side by side (e.g. random init vs pretrained vs the paper's numbers)."""
    from comode.evaluate.report import compare_table, load_report, render_text

    try:
        reports = [load_report(path) for path in runs]
    except ValueError as error:
        raise _fail(str(error)) from None
    table = compare_table(reports)
    out_console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_text(table, width=200))
        out_console.print(f"wrote {out}")


@evaluate_app.command("leakage")
def evaluate_leakage(
    store: str = typer.Option(..., help="Labelled store with a motion and a scene label set (e.g. the sample set)."),
    split: str = typer.Option("1", help="Store split: fit on its train videos, score its test videos."),
    motion: str = typer.Option("motion", help="The motion label set."),
    scene: str = typer.Option("scene", help="The scene label set."),
) -> None:
    """Leakage probes: a still I-frame must be at chance on motion labels, and motion-vector statistics at chance on scene labels."""
    from comode.evaluate.leakage import format_probes, run_leakage_probes

    with _user_errors(ValueError):
        results = run_leakage_probes(store, split=split, motion=motion, scene=scene)
    out_console.print(format_probes(results))
    if any(not r.should_leak and r.verdict != "at chance" for r in results):
        console.print("[yellow]a label set can be read off a signal that should not carry it[/yellow]")
        raise typer.Exit(1)


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise _fail(f"{option} must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None


@evaluate_app.command("ablation")
def evaluate_ablation(
    store: str = typer.Option(..., help="Labelled store with a train/test split, e.g. the sample set (label sets motion and scene)."),
    out: Path = typer.Option(Path("runs/ablation"), help="Folder of the runs, their retrieval reports and ablation.json / ablation.md."),
    config: Optional[Path] = typer.Option(None, help="Pretraining config shared by every variant (default: the repository's configs/pretrain/demo_cpu.yaml)."),
    seeds: str = typer.Option("0,1,2", help="Seeds of every pretrained variant."),
    floor_seeds: Optional[str] = typer.Option(None, help="Seeds of the random-init floor (default: --seeds)."),
    variants: Optional[str] = typer.Option(None, help="Comma-separated variant names (default: all; `--list` shows them)."),
    list_variants: bool = typer.Option(False, "--list", help="Print the variants of the config (name: overrides) and exit."),
    split: str = typer.Option("1", help="Store split: pretrain on its train videos, retrieve its test videos."),
    workers: int = typer.Option(2, help="DataLoader processes of the retrieval feature extraction."),
    progress: bool = typer.Option(True, help="Show progress bars of the pretraining runs."),
    overrides: Optional[List[str]] = typer.Argument(None, help=_OVERRIDES_HELP + " Applied to every variant."),
) -> None:
    """Paper Tables 1/3/4/7 in miniature, and our departures from the paper: pretrain each variant x seed,
    R@1 and linear probe per label set, pretext accuracies beside their blind levels, and what the table decides."""
    from comode.evaluate.ablation import (ablation_table_rows, decide, format_decisions, format_table, run_ablation,
                                          variants_for)
    from comode.train.checkpoint import CheckpointError
    from comode.train.config import ConfigError, load_config

    if config is None:
        config = _DEMO_CONFIG
        if not config.is_file():
            raise _fail(f"the default config {config} ships with the repository, not the installed package; "
                        "pass --config (any configs/pretrain/*.yaml)")
    base_overrides = [f"data.split={split!r}", "data.subset=train", *(overrides or [])]
    with _user_errors(ConfigError):
        known = variants_for(load_config(config, base_overrides))
    if list_variants:
        for name, variant_overrides in known.items():
            out_console.print(f"{name}: " + ("no pretraining (the floor)" if variant_overrides is None
                                             else " ".join(variant_overrides) or "the base config"))
        return
    names = [n.strip() for n in variants.split(",")] if variants else None
    if names is not None and (unknown := [n for n in names if n not in known]):
        raise _fail(f"unknown variant(s) {unknown}; known: {list(known)}")

    def report(cell) -> None:
        recalls = ", ".join([*(f"R@1 {k} {100 * v:.1f}" for k, v in cell.recall_at_1.items()),
                             *(f"linear {k} {100 * v:.1f}" for k, v in cell.linear_top1.items())])
        console.print(f"{cell.variant}, seed {cell.seed}: {recalls}")

    with _user_errors(ConfigError, CheckpointError, FileExistsError, ValueError), logs.to_file(out / "ablation.log"):
        cells = run_ablation(store, out_dir=out, config=config, base_overrides=base_overrides,
                             seeds=_int_list(seeds, "--seeds"),
                             floor_seeds=_int_list(floor_seeds, "--floor-seeds") if floor_seeds else None,
                             variants=names, split=split, workers=workers, show_progress=progress, on_cell=report)
    rows = ablation_table_rows(cells)
    table, decisions = format_table(rows), format_decisions(decide(rows))
    (out / "ablation.md").write_text(table + "\n\n" + decisions + "\n")
    out_console.print(table)
    out_console.print("R@1 and linear-probe top-1 in %, mean ± std over seeds; pretext accuracies (and loss_motion) "
                      "over the last quarter of each run, each with its blind level: what a predictor that ignores "
                      "its input scores on the same candidates.")
    out_console.print(decisions)
    out_console.print(f"Wrote {out / 'ablation.json'} and {out / 'ablation.md'}")


app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
