"""`comode extract` (and the `extract` alias): videos -> store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from comode import logs
from comode.cli.common import EXIT_STORE_FULL, app, console, fail, logger, parse_size, setup_logging, user_errors
from comode.cores import worker_count_problem

# Light: the formats and the settings' defaults, for the options (the rest of extraction,
# PyAV and Zarr included, is imported when a command runs: `comode --help` stays fast).
from comode.extract.datasets import DATASET_KINDS, load_dataset
from comode.extract.settings import ExtractSettings

__all__ = ["extract", "extract_app", "extract_with_progress", "extraction_log"]


# The extraction options' defaults are ExtractSettings' (a dataclass field's default is its class attribute).
def extract(
    dataset: str = typer.Option("folder", help=f"Dataset format: {', '.join(DATASET_KINDS)}."),
    root: Path = typer.Option(..., help="Dataset root folder (the videos)."),
    out: str = typer.Option(..., help="Output store: a local path or any fsspec URL (s3://...)."),
    annotations: Optional[Path] = typer.Option(
        None, help="Annotation file/folder if not in the usual place under ROOT."
    ),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing Dask scheduler (tcp://host:8786)."),
    workers: Optional[int] = typer.Option(
        None, help="Local Dask workers (default: one per core); 0 = sequential, no Dask."
    ),
    codec: str = typer.Option(ExtractSettings.codec, help="Codec of the MV stream: mpeg2video or mpeg4."),
    size: str = typer.Option(f"{ExtractSettings.width}x{ExtractSettings.height}", help="MV-stream size WIDTHxHEIGHT."),
    rgb_size: str = typer.Option(
        f"{ExtractSettings.rgb_width}x{ExtractSettings.rgb_height}", help="Size of the stored RGB stream and I-frames."
    ),
    resize: str = typer.Option(
        ExtractSettings.resize, help="stretch (ignore aspect) or crop (keep aspect, centre-crop)."
    ),
    gop: int = typer.Option(ExtractSettings.gop, help="I-frame distance."),
    quality: int = typer.Option(ExtractSettings.quality, help="Fixed quantiser of the MV stream (1 best .. 31)."),
    timeout: float = typer.Option(ExtractSettings.timeout_s, help="Per-video time limit in seconds."),
    memory_limit: int = typer.Option(
        ExtractSettings.memory_limit_mb,
        help="Per-video address-space limit of FFmpeg in MiB (0: none); a video over it is recorded as failed.",
    ),
    mv_backend: str = typer.Option(ExtractSettings.mv_backend, help="pyav or mvextractor: same vectors, cross-check."),
    partial_annotations: bool = typer.Option(
        False,
        "--partial-annotations",
        help="Extract even when expected annotation files are absent (a split list, a class's split file); "
        "they are named, and the splits they define stay partial.",
    ),
    limit: Optional[int] = typer.Option(None, help="Only the first N videos (sorted by id)."),
    retry_failed: bool = typer.Option(False, help="Retry videos recorded as failed by an earlier run."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    log_level: Optional[str] = typer.Option(
        None,
        "--log-level",
        envvar="COMODE_LOG_LEVEL",
        help="Log level of comode's messages (default: INFO, or the umbrella's --log-level).",
    ),
) -> None:
    """Re-encode videos, read I-frames and motion vectors, and write them to a Zarr store.

    The run's log goes to the console and to <store>.log beside a local store (./<name>.log
    for a remote one)."""
    setup_logging(log_level)
    from comode.extract.executors import make_executor

    if workers is not None:
        problem = "--workers must be >= 0" if workers < 0 else worker_count_problem(workers, option="--workers")
        if problem is not None:
            raise fail(problem)
    width, height = parse_size(size, "--size")
    rgb_width, rgb_height = parse_size(rgb_size, "--rgb-size")
    with user_errors(ValueError):  # DatasetError is one
        settings = ExtractSettings(
            codec=codec,
            gop=gop,
            width=width,
            height=height,
            resize=resize,
            quality=quality,
            rgb_width=rgb_width,
            rgb_height=rgb_height,
            timeout_s=timeout,
            mv_backend=mv_backend,
            memory_limit_mb=memory_limit,
        )
        index = load_dataset(dataset, root, annotations=annotations)
    if not index.videos:
        raise fail(f"no videos found under {root}")
    summary = extract_with_progress(
        index,
        out,
        settings,
        make_executor(scheduler=scheduler, workers=workers),
        progress=progress,
        partial_annotations=partial_annotations,
        retry_failed=retry_failed,
        limit=limit,
    )
    raise typer.Exit(0 if summary.ok else 1)


def _refuse_incomplete(index, log_path: Path) -> None:
    """Exit 2 naming every expected annotation file that is absent: its split would be partial."""
    names = "; ".join(f"{file} ({purpose})" for file, purpose in index.incomplete)
    raise fail(
        f"{len(index.incomplete)} expected annotation file(s) absent: {names}. Restore them (the same command then "
        "extracts and labels everything), or pass --partial-annotations to extract with partial splits "
        f"(log: {log_path})"
    )


def extract_with_progress(
    index, out: str, settings, executor, *, progress: bool, partial_annotations: bool = True, **options
):
    """Run an extraction with its progress display and summary (closing ``executor``); a full
    disk exits with EXIT_STORE_FULL, an unusable store with 2, and so do absent expected
    annotation files unless ``partial_annotations``.  The dataset report goes to the console
    and the log first (:mod:`comode.extract.dataset_report`)."""
    from comode.extract.dataset_report import log_report
    from comode.extract.pipeline import run_extraction
    from comode.extract.run_report import ExtractionProgress, print_summary
    from comode.store.layout import DATASET_REPORT
    from comode.store.writer import StoreFullError

    display = ExtractionProgress(enabled=progress)
    try:
        with logs.to_file(extraction_log(out)) as log_path, display.running():
            log_report(index, where=f"all in {log_path} and in the store's {DATASET_REPORT}")
            if index.incomplete and not partial_annotations:
                _refuse_incomplete(index, log_path)
            logger.info("extracting into %s (log: %s)", out, log_path)
            summary = run_extraction(
                index, out, settings, executor, on_plan=display.on_plan, on_result=display.on_result, **options
            )
    except StoreFullError as error:  # not bad usage: the run stopped, the same command resumes
        raise fail(str(error), code=EXIT_STORE_FULL) from None
    except ValueError as error:
        raise fail(str(error)) from None
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
