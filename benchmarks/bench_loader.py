"""Pretraining loader benchmark: samples/s per worker process, beside a naive loader, same run.

    python benchmarks/bench_loader.py --store data/demo.zarr [--workers 1] [--samples 300]

A sample = a 16-frame clip + an I-frame + 4 MV windows (future + 3 negatives).

1. ours, per process: ``PretrainDataset[i]`` in this process (what one loader worker
   does), cold (first touch of a video: its metadata is read) and warm (cached).
2. where the time goes: the same draws, piece by piece (decode_frames, its RGB conversion,
   MV reads four ways, the I-frame read we avoid).
2b. the read path (``_read_paths``): a sample's store reads (MV windows + stream span) and
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
from torch.utils.data import Subset

from comode.store import layout, open_store
from comode.train.data import PretrainDataset
from comode.train.frames import sample_indices
from comode.train.loader import RunLoader, collate
from comode.train.motion_windows import read_mv_windows
from comode.train.transforms import augment_batch


class EpochSubset(Subset):
    """A Subset that passes the epoch on to its dataset (what RunLoader expects)."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall seconds and the CPU seconds of that pass."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        result = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, result)
    return best


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:8.1f}/s"


def ms(seconds: float, count: int) -> str:
    return f"{1e3 * seconds / count:6.2f} ms"


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
    _read_paths(args.store, draws, args.repeats)

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


def _sample_reads(draws) -> list[tuple[str, slice, slice]]:
    """(video id, MV rows, stream bytes) that each draw's sample reads (data.py's choices:
    the MV range from the first to the last window frame; the span from the I-frame before
    the clip to its end)."""
    reads = []
    for video, _, s in draws:
        iframes, offsets = video.iframe_index, video.rgb_stream_offsets
        first = int(iframes[np.searchsorted(iframes, s.clip.min(), side="right") - 1])
        reads.append(
            (
                video.video_id,
                slice(int(s.mv_frames.min()), int(s.mv_frames.max()) + 1),
                slice(int(offsets[first]), int(offsets[int(s.clip.max()) + 1])),
            )
        )
    return reads


def _read_paths(store_url: str, draws, repeats: int) -> None:
    """Section 2b (see the module docstring)."""
    import sys

    import tensorstore as ts
    import zarr

    from comode.store.arrays import open_array
    from comode.store.location import join
    from comode.store.rgb import decode_span

    sys.path.insert(0, str(Path(__file__).parent))
    from baseline_array_rows import open_rows

    reads = _sample_reads(draws)
    ids = sorted({r[0] for r in reads})
    uncached = ts.Context({"cache_pool": {"total_bytes_limit": 0}, "data_copy_concurrency": {"limit": 1}})

    def opened(kind: str, base: str) -> dict[str, tuple]:
        def one(video_id: str, name: str):
            url = join(base, "videos", video_id, name)
            if kind == "rows":
                return open_rows(url)
            if kind == "zarr":
                return zarr.open_group(base, mode="r")["videos"][video_id][name]
            return open_array(url, ts_context=uncached if kind == "ts-nocache" else None)

        return {v: (one(v, layout.MVS), one(v, layout.RGB_STREAM)) for v in ids}

    def sequential(arrays):
        return _reads(arrays, reads, in_flight=False)

    def concurrent(arrays):
        return _reads(arrays, reads, in_flight=True)

    def whole(arrays, overlap: bool):
        """What PretrainDataset.load does with the store: MV read, span read, span decode."""

        def run():
            for (video, _, s), (v, m, b) in zip(draws, reads):
                mvs, stream = arrays[v]
                pending = mvs.start(m) if overlap else None
                first = int(video.iframe_index[np.searchsorted(video.iframe_index, s.clip.min(), side="right") - 1])
                span = stream.start(b).result() if overlap else stream[b]
                rel = video.rgb_stream_offsets[first : int(s.clip.max()) + 2] - b.start
                decode_span(span, rel, (s.clip - first).tolist())
                pending.result() if overlap else mvs[m]

        return run

    def cold(kind: str, base: str):
        return lambda: opened(kind, base)

    def report(title: str, contenders: dict, count: int, baseline: str) -> None:
        best = {name: (float("inf"), float("inf")) for name in contenders}
        for _ in range(repeats):  # alternated: a loaded machine slows all alike
            for name, fn in contenders.items():
                best[name] = min(best[name], timed(fn, 1))
        print(f"   {title}")
        for name, (wall, cpu) in best.items():
            print(f"     {name:44s} {ms(wall, count)}  cpu {ms(cpu, count)}  x{wall / best[baseline][0]:5.2f}")

    local = {kind: opened(kind, store_url) for kind in ("rows", "ts", "ts-nocache", "zarr")}
    same = all(
        np.array_equal(a[v][0][m], local["rows"][v][0][m]) and np.array_equal(a[v][1][b], local["rows"][v][1][b])
        for a in (local["ts"], local["zarr"])
        for v, m, b in reads[:20]
    )
    print(f"\n2b. read path, local store ({len(reads)} samples, {len(ids)} videos; same values all ways: {same})")
    print(
        "   (+ cache: the process's 32 MiB cache, which here holds the whole store after the first pass:\n"
        "   a best case; 'without cache' is the worst case, a store far larger than the cache)"
    )
    report(
        "a sample's reads (MV windows + stream span), warm handles, per sample",
        {
            "ArrayRows (old)": sequential(local["rows"]),
            "tensorstore + cache, one after the other": sequential(local["ts"]),
            "tensorstore + cache, both in flight": concurrent(local["ts"]),
            "tensorstore without cache, both in flight": concurrent(local["ts-nocache"]),
            "zarr-python": sequential(local["zarr"]),
        },
        len(reads),
        "ArrayRows (old)",
    )
    report(
        "whole sample (reads + span decode), per sample",
        {
            "ArrayRows (old), in turn": whole(local["rows"], overlap=False),
            "tensorstore + cache, MV read during decode": whole(local["ts"], overlap=True),
            "tensorstore without cache, same": whole(local["ts-nocache"], overlap=True),
        },
        len(reads),
        "ArrayRows (old), in turn",
    )
    report(
        "opening a video's two arrays (first touch), per video",
        {
            "ArrayRows (old)": cold("rows", store_url),
            "tensorstore": cold("ts-nocache", store_url),
            "zarr-python": cold("zarr", store_url),
        },
        len(ids),
        "ArrayRows (old)",
    )
    _remote_reads(store_url, ids, reads, opened, report)


def _reads(arrays, reads, *, in_flight: bool):
    """A function that makes the store reads of ``reads``; ``in_flight``: both of a sample's
    reads started before waiting for either (tensorstore's ``start``)."""

    def run():
        for v, m, b in reads:
            mvs, stream = arrays[v]
            if in_flight:
                pending = mvs.start(m), stream.start(b)
                [p.result() for p in pending]
            else:
                mvs[m], stream[b]

    return run


def _remote_reads(store_url, ids, reads, opened, report) -> None:
    """The same reads from a loopback S3 server (moto), the store's videos uploaded first."""
    import os

    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("\n   remote reads skipped: needs moto[server] and s3fs (pip install -e '.[test]')")
        return
    import logging

    from comode.store import location

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    try:
        host, port = server.get_host_and_port()
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        location.s3_endpoint.cache_clear()
        fs, _ = location.filesystem("s3://bench")
        fs.mkdir("bench")
        fs.put(str(Path(store_url) / "zarr.json"), "bench/x.zarr/zarr.json")
        fs.put(str(Path(store_url) / "videos" / "zarr.json"), "bench/x.zarr/videos/zarr.json")
        for video_id in ids:
            fs.put(str(Path(store_url) / "videos" / video_id), f"bench/x.zarr/videos/{video_id}", recursive=True)
        remote = {kind: opened(kind, "s3://bench/x.zarr") for kind in ("ts", "ts-nocache", "zarr")}
        count = min(len(reads), 60)
        sample = reads[:count]
        print(f"\n   remote: the same store on a loopback S3 server (moto), {count} samples")
        report(
            "a sample's reads, per sample",
            {
                "zarr-python + s3fs (the old remote path)": _reads(remote["zarr"], sample, in_flight=False),
                "tensorstore S3 + cache, both in flight": _reads(remote["ts"], sample, in_flight=True),
                "tensorstore S3 without cache, same": _reads(remote["ts-nocache"], sample, in_flight=True),
            },
            count,
            "zarr-python + s3fs (the old remote path)",
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        location.s3_endpoint.cache_clear()
        server.stop()


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
