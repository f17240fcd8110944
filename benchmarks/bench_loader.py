"""Pretraining loader benchmark: samples/s per worker process, beside a naive loader, same run.

    python benchmarks/bench_loader.py --store data/demo.zarr [--workers 1] [--samples 300]

A sample = a 16-frame clip + an I-frame + 4 MV windows (future + 3 negatives).

1. ours, per process: ``PretrainDataset[i]`` in this process (what one loader worker
   does), cold (first touch of a video: its metadata is read) and warm (cached).
2. where the time goes: the same draws, piece by piece (decode_frames, its RGB conversion,
   MV reads four ways, the I-frame read we avoid).
2b. the read path (``loader_read_paths.py``): a sample's store reads (MV windows + stream span) and
   whole samples (reads + decode) through tensorstore (now) beside ``ArrayRows`` (the local
   reader before tensorstore, benchmarks/baseline_array_rows.py) and zarr-python, the same
   draws, alternated, best of ``--repeats``; tensorstore with the cache it runs with and
   with no cache (a store far larger than the cache); then the same reads from a loopback
   S3 server (moto, if installed): tensorstore's S3 driver beside zarr-python + s3fs.
3. augmentation on the CPU, one thread (in training it runs batched on the GPU instead).
4. ours through ``RunLoader`` (the loader pretraining uses) with --workers processes:
   delivered samples/s, per worker, and the time to the first batch for each start method.
5. naive baseline, same samples: open the SOURCE video with PyAV, decode from frame 0 to
   the last needed frame (clip + I-frame), convert and resize the needed frames to 170x128
   (one thread).  It reads no motion vectors at all, so the ratio is conservative.

Timings are best-of-``--repeats`` wall clock per pass (the machine may be shared), and the
CPU time of this process is printed beside them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from loader_read_paths import read_paths
from timing import ms, rate, timed
from torch.utils.data import Subset

from comode.data.dataset import PretrainDataset
from comode.data.frames import sample_indices
from comode.data.loader import RunLoader, collate
from comode.data.motion_windows import read_mv_windows
from comode.data.transforms import augment_batch
from comode.store import layout, open_store


class EpochSubset(Subset):
    """A Subset that passes the epoch on to its dataset (what RunLoader expects)."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def naive_sample(source: Path, wanted: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Decode the source from frame 0 to max(wanted); return those frames, RGB, resized."""
    positions = {int(f): i for i, f in enumerate(np.unique(wanted))}
    out = [None] * len(positions)
    last = int(wanted.max())
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        container.seek(0)
        for number, frame in enumerate(container.decode(stream)):
            if number in positions:
                out[positions[number]] = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
            if number >= last:
                break
    frames = np.stack(out)
    return frames[np.searchsorted(np.unique(wanted), wanted)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--videos", type=Path, help="source videos root (default: the store's dataset root)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--samples", type=int, default=240, help="samples per timed pass")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core, like a loader worker

    store = open_store(args.store)
    dataset = PretrainDataset(args.store, seed=0)
    n_videos, count = len(dataset), args.samples
    indices = [i % n_videos for i in range(count)]
    frames = sum(store.video(v).num_frames for v in dataset.video_ids)
    print(f"store {args.store}: {n_videos} videos, {frames} frames; {count} samples per pass, best of {args.repeats}")
    print(f"torch {torch.__version__}, PyAV {av.__version__}, 1 thread")

    # 1. ours, in this process -----------------------------------------------------------
    print("\n1. ours, one process (= one loader worker), clip + I-frame + 4 MV windows, un-augmented")
    cold_dataset = PretrainDataset(args.store, seed=0)
    wall, cpu = timed(lambda: [cold_dataset[i] for i in range(n_videos)], 1)
    print(
        f"   cold (first touch of each video)  {ms(wall, n_videos)}/sample  {rate(n_videos, wall)}  cpu {ms(cpu, n_videos)}"
    )
    for i in range(n_videos):
        dataset[i]
    ours_wall, ours_cpu = timed(lambda: [dataset[i] for i in indices], args.repeats)
    print(
        f"   warm                              {ms(ours_wall, count)}/sample  {rate(count, ours_wall)}  cpu {ms(ours_cpu, count)}"
    )

    # 2. breakdown -----------------------------------------------------------------------
    print("\n2. where the time goes (warm, per sample)")
    rng = np.random.default_rng(0)
    draws = []
    for i in indices:
        video = store.video(dataset.video_ids[i])
        video.iframe_index, video.rgb_stream_offsets  # noqa: B018 -- cached, as the dataset does
        draws.append((video, video.mvs, sample_indices(video.num_frames, video.iframe_index, rng=rng)))
    parts = {
        "decode_frames(clip + I-frame)": lambda: [
            v.decode_frames(np.append(s.clip, s.iframe_frame)) for v, _, s in draws
        ],
        "decode_frames(clip only)": lambda: [v.decode_frames(s.clip) for v, _, s in draws],
        "  of which rgb_stream open + read": lambda: [_read_span(v, s.clip) for v, _, s in draws],
        "I-frame from iframes[k] (not used)": lambda: [v.iframes[s.iframe] for v, _, s in draws],
        "MVs: one range read (what we do)": lambda: [read_mv_windows(m, s.mv_frames) for _, m, s in draws],
        "MVs: whole array": lambda: [m[...] for _, m, _ in draws],
        "MVs: 4 window reads": lambda: [[m[w[0] : w[-1] + 1] for w in s.mv_frames] for _, m, s in draws],
        "MVs: one orthogonal read": lambda: [m.oindex[np.unique(s.mv_frames)] for _, m, s in draws],
        "MVs: array open (cached by us)": lambda: [v.mvs for v, _, _ in draws],
    }
    for name, fn in parts.items():
        wall, cpu = timed(fn, args.repeats)
        print(f"   {name:38s} {ms(wall, count)}  cpu {ms(cpu, count)}")
    _conversion_breakdown(draws, args.repeats)
    read_paths(args.store, draws, args.repeats)

    # 3. augmentation on the CPU -------------------------------------------------------------
    batches = [
        collate([dataset[i] for i in indices[j : j + args.batch]])
        for j in range(0, min(count, 4 * args.batch), args.batch)
    ]
    augmented = sum(len(b["clip"]) for b in batches)
    generator = torch.Generator().manual_seed(0)
    aug_wall, aug_cpu = timed(
        lambda: [augment_batch(b, generator=generator, train=True) for b in batches], args.repeats
    )
    print(
        f"\n3. augment_batch on the CPU, 1 thread, batch {args.batch}: {ms(aug_wall, augmented)}/sample  "
        f"{rate(augmented, aug_wall)}  (on a GPU it runs batched; not a worker's job)"
    )
    combined = 1 / (ours_wall / count + aug_wall / augmented)
    print(f"   ours + CPU augmentation in one process: {combined:8.1f}/s")

    # 4. through the loader ------------------------------------------------------------------
    print(f"\n4. RunLoader, {args.workers} worker(s), batch {args.batch}")
    # No "fork": tensorstore aborts a process forked after its parent read through it (the
    # workers would fall back to zarr-python, comode.store.arrays).
    for method in ("forkserver", "forkserver", "spawn"):  # the 1st forkserver starts the server
        start = time.perf_counter()
        loader = RunLoader(
            EpochSubset(PretrainDataset(args.store, seed=0), indices),
            global_batch=args.batch,
            workers=args.workers,
            seed=0,
            start_method=method,
        )
        iterator = iter(loader.epoch(0))
        next(iterator)
        print(f"   {method:10s} time to first batch {time.perf_counter() - start:6.2f} s")
        del iterator, loader
    repeated = EpochSubset(dataset, indices)  # count samples per epoch, whatever the store's size
    loader = RunLoader(repeated, global_batch=args.batch, workers=args.workers, seed=0)
    for epoch in range(2):  # the first epoch warms the workers' caches
        start = time.perf_counter()
        loaded = sum(len(batch["clip"]) for batch in loader.epoch(epoch))
        elapsed = time.perf_counter() - start
    delivered = loaded / elapsed
    print(f"   delivered {delivered:8.1f}/s = {delivered / max(1, args.workers):6.1f}/s per worker (warm)")

    # 5. naive ------------------------------------------------------------------------------------
    root = args.videos or Path(store.dataset.get("root", "."))
    sources = [root / v.attrs["source"] for v, _, _ in draws]
    if not all(path.exists() for path in sources):
        print(f"\n5. naive baseline skipped: source videos not found under {root} (use --videos)")
        return
    naive_count = min(count, 2 * n_videos)
    naive = list(zip(sources[:naive_count], draws[:naive_count]))
    naive_wall, naive_cpu = timed(
        lambda: [naive_sample(p, np.append(s.clip, s.iframe_frame), (170, 128)) for p, (_, _, s) in naive], args.repeats
    )
    print("\n5. naive PyAV loader from the SOURCE videos (clip + I-frame, no MVs), one process")
    print(f"   {ms(naive_wall, naive_count)}/sample  {rate(naive_count, naive_wall)}  cpu {ms(naive_cpu, naive_count)}")
    print(
        f"\nours per process {count / ours_wall:.1f}/s vs naive {naive_count / naive_wall:.1f}/s: "
        f"{(count / ours_wall) / (naive_count / naive_wall):.1f}x  (targets: >= 100/s per core, >= 5x)"
    )


def _read_span(video, clip: np.ndarray) -> np.ndarray:
    """What decode_frames reads: the stream bytes from the I-frame before clip[0] to clip[-1]."""
    iframes, offsets = video.iframe_index, video.rgb_stream_offsets
    first = int(iframes[np.searchsorted(iframes, clip.min(), side="right") - 1])
    stream = video.array(layout.RGB_STREAM)
    return stream[int(offsets[first]) : int(offsets[int(clip.max()) + 1])]


def _decode(video, clip: np.ndarray, convert) -> list[np.ndarray]:
    """decode_span's work for one clip, with a chosen RGB conversion."""
    iframes, offsets = video.iframe_index, video.rgb_stream_offsets
    first = int(iframes[np.searchsorted(iframes, clip.min(), side="right") - 1])
    data = memoryview(np.ascontiguousarray(_read_span(video, clip)))
    rel = offsets[first : int(clip.max()) + 2] - offsets[first]
    context = av.CodecContext.create(layout.RGB_CODEC, "r")
    context.thread_count = 1
    frames = []
    for i in range(len(rel) - 1):
        frames.extend(context.decode(av.Packet(data[int(rel[i]) : int(rel[i + 1])])))
    frames.extend(context.decode(None))
    return [convert(frames[int(f) - first]) for f in clip]


def _conversion_breakdown(draws, repeats: int) -> None:
    """The RGB conversion of decode_span, four ways.  PyAV's default ``threads=0`` gives a
    swscale context its own thread pool: built per frame by ``to_ndarray`` (the original
    code), once per process by a shared VideoReformatter.  ``threads=1`` (rgb.py now)
    converts in the calling thread: one core per worker, same pixels."""
    shared, single = VideoReformatter(), VideoReformatter()
    ways = {
        "  span read + decode, frame.to_ndarray": lambda frame: frame.to_ndarray(format="rgb24"),
        "  ..., shared reformatter, threads=0": lambda frame: shared.reformat(frame, format="rgb24").to_ndarray(),
        "  ..., shared, threads=1 (rgb.py now)": lambda frame: single.reformat(
            frame, format="rgb24", threads=1
        ).to_ndarray(),
        "  ..., no conversion": lambda frame: frame,
    }
    for name, convert in ways.items():
        wall, cpu = timed(lambda: [_decode(v, s.clip, convert) for v, _, s in draws], repeats)
        print(f"   {name:38s} {ms(wall, len(draws))}  cpu {ms(cpu, len(draws))}")
    video, _, sample = draws[0]
    pixels = [_decode(video, sample.clip, convert) for convert in list(ways.values())[:3]]
    same = all(np.array_equal(a, b) for other in pixels[1:] for a, b in zip(pixels[0], other))
    print(f"   (identical pixels all three ways: {same})")


if __name__ == "__main__":
    main()
