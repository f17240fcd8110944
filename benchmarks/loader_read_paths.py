"""Section 2b of ``bench_loader.py``: the read path.  A sample's store reads (MV windows +
stream span) and whole samples (reads + decode) through tensorstore (now) beside
``ArrayRows`` (the local reader before tensorstore, ``baseline_array_rows.py``) and
zarr-python, the same draws, alternated, best of ``repeats``; tensorstore with the cache it
runs with and with no cache (a store far larger than the cache); then the same reads from a
loopback S3 server (moto, if installed): tensorstore's S3 driver beside zarr-python + s3fs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorstore as ts
import zarr
from baseline_array_rows import open_rows
from timing import ms, timed

from comode.store import layout, location
from comode.store.arrays import open_array
from comode.store.location import join
from comode.store.rgb import decode_span

__all__ = ["read_paths"]


def _sample_reads(draws) -> list[tuple[str, slice, slice]]:
    """(video id, MV rows, stream bytes) that each draw's sample reads (data/dataset.py's choices:
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


def read_paths(store_url: str, draws, repeats: int) -> None:
    """Section 2b of bench_loader.py (see the module docstring)."""
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
    try:  # optional: the test extra
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("\n   remote reads skipped: needs moto[server] and s3fs (pip install -e '.[test]')")
        return
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
