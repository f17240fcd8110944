"""`comode sample`: generate the built-in labelled sample set (and optionally measure it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from comode.cli.common import app, out_console, parse_size, user_errors
from comode.cli.extract import extract_with_progress

__all__ = ["sample"]


@app.command("sample")
def sample(
    out: Path = typer.Option(..., help="Folder to write the videos, labels.csv and sample.json to (empty or new)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same frames."),
    videos_per_class: int = typer.Option(48, help="Clips per motion class, spread evenly over the scenes."),
    frames: int = typer.Option(96, help="Frames per clip (25 fps; a pretraining sample spans 70)."),
    size: str = typer.Option("170x128", help="Frame size WIDTHxHEIGHT (even numbers)."),
    scenes: str = typer.Option(
        ",".join(("astronaut", "cat", "coffee", "rocket")),
        help="Comma-separated scenes: astronaut, cat, coffee, rocket, hubble, camera.",
    ),
    motions: str = typer.Option(
        "all",
        help="Comma-separated motion patterns (circle_ccw, circle_cw, lissajous, oscillate_x, oscillate_y, pulse) or 'all'.",
    ),
    test_fraction: float = typer.Option(0.4, help="Share of each (motion, scene) cell in the test split."),
    camera: bool = typer.Option(
        False, help="Pan the camera slowly (a nuisance independent of both labels; default: static)."
    ),
    workers: Optional[int] = typer.Option(None, help="Processes (default: one per core); 0 = in this process."),
    overwrite: bool = typer.Option(False, help="Replace an earlier sample set in --out."),
    store: Optional[str] = typer.Option(
        None, help="Also extract the set into this store and measure its motion-vector coverage."
    ),
    measure: bool = typer.Option(False, help="Extract into a temporary store just to measure motion-vector coverage."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Generate the built-in labelled sample dataset: real-photo scenes x motion patterns (format 'sample')."""
    import tempfile
    import time

    from rich.table import Table

    from comode.progress import Progress
    from comode.sampleset import MOTIONS, SampleSpec, generate_sample, near_duplicate_share

    width, height = parse_size(size, "--size")
    with user_errors(ValueError):
        spec = SampleSpec(
            seed=seed,
            videos_per_class=videos_per_class,
            frames=frames,
            width=width,
            height=height,
            scenes=tuple(x.strip() for x in scenes.split(",") if x.strip()),
            motions=MOTIONS if motions == "all" else tuple(x.strip() for x in motions.split(",") if x.strip()),
            test_fraction=test_fraction,
            camera=camera,
        )
    start = time.perf_counter()
    with (
        user_errors(FileExistsError, ValueError),
        Progress("generate", total=None, unit="clips", enabled=progress) as bar,
    ):
        clips = generate_sample(
            spec,
            out,
            workers=workers,
            overwrite=overwrite,
            on_clip=lambda clip, done, total: bar.set(done, total=total),
        )
    seconds = time.perf_counter() - start
    megabytes = sum(f.stat().st_size for f in out.rglob("*.mp4")) / 1e6
    table = Table(title=f"sample set in {out}", show_header=False, box=None)
    table.add_row(
        "clips",
        f"{len(clips)} ({sum(c.split == 'train' for c in clips)} train, "
        f"{sum(c.split == 'test' for c in clips)} test), {spec.frames} frames at "
        f"{spec.width}x{spec.height}, {spec.fps} fps, {megabytes:.1f} MB",
    )
    if not any(c.split == "test" for c in clips):
        table.add_row(
            "[yellow]note",
            f"no test clips: a (motion, scene) pair needs 2 clips for one to be test "
            f"(--videos-per-class >= {2 * len(spec.scenes)})",
        )
    table.add_row("motions", ", ".join(spec.motions))
    table.add_row(
        "hard negatives",
        f"{near_duplicate_share(clips):.1%} move like their positive window "
        "(analytic velocities; see comode.sampleset.near_duplicate_share)",
    )
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
    from comode.extract.settings import ExtractSettings
    from comode.sampleset import mv_block_coverage

    summary = extract_with_progress(
        load_dataset("sample", root), store, ExtractSettings(), make_executor(workers=workers), progress=progress
    )
    coverage = mv_block_coverage(store)
    table = Table(
        title="motion-vector coverage: P-frame 16x16 blocks with a non-zero vector", show_header=False, box=None
    )
    table.add_row(
        "all",
        f"{coverage.share:.1%} of {coverage.blocks} blocks ({coverage.p_frames} P-frames, {coverage.videos} videos)",
    )
    for name, share in coverage.by_label.items():
        table.add_row(name, f"{share:.1%}")
    out_console.print(table)
    if not summary.ok:
        raise typer.Exit(1)
