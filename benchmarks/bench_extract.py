"""Extraction benchmark: throughput and store size, each beside a baseline measured in the same run.

    python benchmarks/bench_extract.py --videos ../shared/data/real [--workers 2] [--repeats 3]

1. End-to-end (source -> store, re-encode included) per clip, single process, against the
   bare ffmpeg re-encode of the same clip (source -> 340x256 MPEG-2, GOP 12, no B-frames,
   the same binary and options, one thread), both best of --repeats.
2. Whole-set throughput with the Dask LocalCluster (one worker per core) against the same
   bare re-encodes run with the same parallelism.
3. Extract-only from an already-GOP-12 MPEG-2 file (frame types + MV grid + RGB I-frames)
   against `ffmpeg -flags2 +export_mvs -i X -f null -`.
4. Store bytes per frame (all arrays) against a JPEG-per-frame store (quality 90) of the
   same 340x256 frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
from PIL import Image

from comode.extract.datasets import VIDEO_EXTENSIONS, load_dataset
from comode.extract.decode import MV_DECODER_OPTIONS, _frame_type
from comode.extract.encode import ffmpeg_exe, reencode
from comode.extract.executors import DaskExecutor, default_worker_count
from comode.extract.mvgrid import records_to_grid
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_to_store
from comode.store.rgb import frame_to_rgb
from comode.store.writer import create_or_open_root


def bare_reencode(source: Path, output: str, settings: ExtractSettings) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-threads", "1",
            "-filter_threads", "1", "-i", str(source), "-an", "-sn", "-dn", "-fps_mode", "passthrough",
            "-vf", f"scale={settings.width}:{settings.height}", "-c:v", settings.codec, "-threads", "1",
            "-g", str(settings.gop), "-bf", "0", "-sc_threshold", "1000000000", "-q:v", str(settings.quality),
            "-f", "mpeg2video" if settings.codec == "mpeg2video" else "m4v", output]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.demux(video=0) if _.size)


def extract_only(path: Path, cell: int, grid_shape) -> int:
    """Frame types, MV grid and RGB I-frames from an existing GOP-12 stream (one pass)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        # Reconstruct only key frames: their pixels are needed, the P-frames' are not.
        stream.codec_context.options = {**MV_DECODER_OPTIONS, "skip_idct": "nokey"}
        types, tables, owners, iframes = [], [], [], []
        for i, frame in enumerate(container.decode(stream)):
            kind = _frame_type(frame)
            types.append(kind)
            if kind == ord("I"):
                iframes.append(frame_to_rgb(frame))
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                table = side.to_ndarray()
                tables.append(table)
                owners.append(np.full(len(table), i))
    records = np.concatenate(tables) if tables else np.zeros(0)
    records_to_grid(records, np.concatenate(owners) if owners else np.zeros(0, int), num_frames=len(types),
                    grid_shape=grid_shape, cell=cell)
    return len(types)


def jpeg_bytes(path: Path) -> tuple[int, int]:
    total = frames = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            buffer = io.BytesIO()
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(buffer, "JPEG", quality=90)
            total += buffer.tell()
            frames += 1
    return total, frames


def directory_bytes(path: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for file in path.rglob("*"):
        if file.is_file():
            parts = file.relative_to(path).parts
            key = parts[2] if len(parts) > 3 and parts[0] == "videos" else "metadata"
            sizes[key] = sizes.get(key, 0) + file.stat().st_size
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=Path("../shared/data/real"))
    parser.add_argument("--workers", type=int, default=default_worker_count())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = ExtractSettings()
    dataset = load_dataset("folder", args.videos)
    clips = [item for item in dataset.videos if Path(item.path).suffix.lower() in VIDEO_EXTENSIONS]
    work = Path(tempfile.mkdtemp(prefix="comode-bench-"))
    print(f"ffmpeg {ffmpeg_exe()}\n{len(clips)} clips, {args.workers} workers, best of {args.repeats}\n")

    # 1. Per clip, single process.
    header = (f"{'clip':34s} {'src':>9s} {'frames':>6s} | {'bare fps':>8s} {'2-stream':>8s} {'ours fps':>8s} {'ratio':>5s} "
              f"| {'mvs-only':>8s} {'ffmpeg':>7s} {'ratio':>5s}")
    print(header + "\n" + "-" * len(header))
    rows = []
    for item in clips:
        source = Path(item.path)
        frames = count_frames(source)
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            size = f"{stream.width}x{stream.height}"
        bare = best_of(args.repeats, lambda: subprocess.run(bare_reencode(source, "/dev/null", settings), check=True))

        def ours():
            url = str(work / "single.zarr")
            shutil.rmtree(url, ignore_errors=True)
            from comode.extract.pipeline import root_attributes

            create_or_open_root(url, root_attrs=root_attributes(dataset, settings))
            result = extract_to_store(item, settings, url)
            assert result.status == "complete", result.error

        ours_time = best_of(args.repeats, ours)
        with tempfile.TemporaryDirectory() as scratch:
            two_streams = best_of(args.repeats, lambda: reencode(source, Path(scratch) / "x.nut", settings))
        gop12 = work / f"{item.video_id}.m2v"
        subprocess.run(bare_reencode(source, str(gop12), settings), check=True)
        mine = best_of(args.repeats, lambda: extract_only(gop12, settings.mv_cell, settings.grid_shape))
        reference = best_of(args.repeats, lambda: subprocess.run(
            [ffmpeg_exe(), "-loglevel", "error", "-threads", "1", "-flags2", "+export_mvs", "-i", str(gop12),
             "-f", "null", "-"], check=True))
        rows.append((item.video_id, size, frames, bare, ours_time, mine, reference, two_streams))
        print(f"{item.video_id[:34]:34s} {size:>9s} {frames:6d} | {frames / bare:8.0f} {frames / two_streams:8.0f} "
              f"{frames / ours_time:8.0f} "
              f"{bare / ours_time:5.2f} | {frames / mine:8.0f} {frames / reference:7.0f} {reference / mine:5.2f}")

    # 2. Whole set, parallel.
    all_frames = sum(r[2] for r in rows)
    start = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda item: subprocess.run(bare_reencode(Path(item.path), "/dev/null", settings), check=True), clips))
    bare_parallel = time.perf_counter() - start
    url = work / "all.zarr"
    executor = DaskExecutor(workers=args.workers)
    try:
        summary = run_extraction(dataset, str(url), settings, executor)
    finally:
        executor.close()
    assert summary.ok, summary.failures

    # 4. Sizes.
    sizes = directory_bytes(url)
    store_total = sum(sizes.values())
    jpeg_total = jpeg_frames = 0
    for item in clips:
        b, f = jpeg_bytes(work / f"{item.video_id}.m2v")
        jpeg_total += b
        jpeg_frames += f

    small = [r for r in rows if int(r[1].split("x")[1]) <= 360]
    small_ids = {r[0] for r in small}
    small_index = dataclasses.replace(dataset, videos=tuple(v for v in dataset.videos if v.video_id in small_ids))
    executor = DaskExecutor(workers=args.workers)
    try:
        small_summary = run_extraction(small_index, str(work / "small.zarr"), settings, executor)
    finally:
        executor.close()
    small_frames = sum(r[2] for r in small)
    print(f"\nwhole set, {args.workers} workers: ours {summary.frames / summary.seconds:.0f} frames/s (Dask, end to end, "
          f"{summary.frames} frames in {summary.seconds:.1f} s) vs bare re-encode {all_frames / bare_parallel:.0f} frames/s "
          f"-> ratio {bare_parallel / summary.seconds:.2f}")
    print(f"240p-360p clips ({len(small)}): ours {small_summary.frames / small_summary.seconds:.0f} frames/s "
          f"(Dask, {args.workers} workers, end to end)  (target >= 500)")
    two = sum(r[7] for r in rows)
    print(f"cost split, all clips single process: bare re-encode {sum(r[3] for r in rows):.2f} s, our two-stream "
          f"ffmpeg {two:.2f} s, everything else (MV/I-frame decode, grid, store write) {sum(r[4] for r in rows) - two:.2f} s")
    ratios = [r[3] / r[4] for r in rows]
    print(f"per-clip end-to-end / bare re-encode: min {min(ratios):.2f}, median {np.median(ratios):.2f}  (target >= 0.8)")
    extract_ratios = [r[6] / r[5] for r in rows]
    print(f"per-clip extract-only / ffmpeg export_mvs decode: min {min(extract_ratios):.2f}, median "
          f"{np.median(extract_ratios):.2f}  (target >= 0.8)")
    print(f"store: {store_total / summary.frames:.0f} bytes/frame "
          + ", ".join(f"{k} {v / summary.frames:.0f}" for k, v in sorted(sizes.items()))
          + f"  vs JPEG q90 per frame at {settings.width}x{settings.height}: {jpeg_total / jpeg_frames:.0f} bytes/frame "
          f"-> {jpeg_total / jpeg_frames / (store_total / summary.frames):.1f}x smaller  (target <= 6000)")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"peak RSS of the benchmark process: {usage.ru_maxrss / 1024:.0f} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
