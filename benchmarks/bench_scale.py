"""Opening a store of 10k-240k videos: `store info`, `store validate`, the first pretraining
step, and opening on a loopback S3 server, each with the index and with the scan it replaces.

    python benchmarks/bench_scale.py [--sizes 10000,50000,240000] [--s3-size 10000] [--work DIR]

Why synthetic stores, and what they are: extracting 240k videos takes days, and what these
operations cost grows with the number of groups, not with their contents.  So the shared
real clips are extracted once (``--work``/template.zarr), and a store of N videos is N
group folders, each with its own ``zarr.json`` (the template group's attributes, a new
source and write id) and its array folders as symbolic links to the template's arrays
(9 inodes and ~8 KB a video instead of ~45 inodes and ~120 KB of folders with hard links;
the links are followed the way the real folders would be read).  The index is then made by
``comode store reindex`` (timed: the cost of a full scan, what a store without an index
pays on every open).  On S3 (moto's server on 127.0.0.1) only metadata is uploaded: the
root, each group's ``zarr.json`` and the index; opening reads nothing else.

Every operation runs as a fresh ``comode`` process, like a user's, timed from start to
exit, with the index and then without it (the index folder moved aside: the scan fallback,
with its warning).  ``--validate-max`` skips ``store validate`` (O(videos) by nature: it
reads every group) above that size.  Prints a table and the growth per video between the
smallest and the largest size, and writes the figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COMODE_SHARED_DATA", REPO.parent / "shared" / "data"))
TEMPLATE_CLIPS = ("mmaction2_apply_eye_makeup.avi", "torchcodec_nasa_13013.mp4", "mmaction2_arm_wrestling.mp4")
# Disk a synthetic video costs (its folder's block, its zarr.json's block, inodes), and inodes.
BYTES_PER_VIDEO, INODES_PER_VIDEO = 12_000, 10
COMODE = [sys.executable, "-m", "comode"]
BUCKET = "comode-bench"


def shared_folder() -> Path:
    """The folder of the shared clips (exits saying where it looked when there is none)."""
    real = SHARED / "real"
    if not real.is_dir():
        sys.exit(f"shared clips not found at {real} (set COMODE_SHARED_DATA to the shared data folder)")
    return real


def shared_clips() -> tuple[str, ...]:
    """The names of every shared clip."""
    return tuple(sorted(p.name for p in shared_folder().iterdir() if p.suffix in (".mp4", ".avi", ".mkv")))


def template_store(work: Path, clips: Sequence[str] = TEMPLATE_CLIPS, *, workers: int | None = 0) -> Path:
    """The shared ``clips`` linked into ``work``/clips/all and extracted into
    ``work``/template.zarr (a later run resumes it: nothing left to do); ``workers``: the
    extraction's ``--workers`` (None: its default, a Dask worker per core)."""
    folder, store, real = work / "clips" / "all", work / "template.zarr", shared_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        if not (folder / clip).exists():
            (folder / clip).symlink_to(real / clip)
    subprocess.run(
        [
            *COMODE,
            "extract",
            "--dataset",
            "folder",
            "--root",
            str(folder.parent),
            "--out",
            str(store),
            "--no-progress",
            *([] if workers is None else ["--workers", str(workers)]),
        ],
        check=True,
        capture_output=True,
    )
    return store


def check_disk(work: Path, sizes: list[int]) -> None:
    usage, inodes = shutil.disk_usage(work), os.statvfs(work)
    need = sum(sizes) * BYTES_PER_VIDEO * 1.2
    if need > usage.free or sum(sizes) * INODES_PER_VIDEO > inodes.f_favail:
        sys.exit(
            f"not enough room in {work}: {need / 1e9:.1f} GB and {sum(sizes) * INODES_PER_VIDEO:,} inodes "
            f"needed, {usage.free / 1e9:.1f} GB and {inodes.f_favail:,} free; choose fewer --sizes"
        )
    print(f"disk: {need / 1e9:.1f} GB of {usage.free / 1e9:.1f} GB free needed for {sizes}", flush=True)


def build_store(template: Path, store: Path, videos: int) -> float:
    """A store of ``videos`` groups linked to the template's arrays; seconds taken (not timed below)."""
    start = time.perf_counter()
    shutil.rmtree(store, ignore_errors=True)
    (store / "videos").mkdir(parents=True)
    shutil.copy(template / "zarr.json", store / "zarr.json")
    shutil.copy(template / "videos" / "zarr.json", store / "videos" / "zarr.json")
    groups = sorted(p for p in (template / "videos").iterdir() if p.is_dir())
    metadata = [json.loads((group / "zarr.json").read_text()) for group in groups]
    arrays = [sorted(p for p in group.iterdir() if p.is_dir()) for group in groups]
    for number in range(videos):
        k = number % len(groups)
        folder = store / "videos" / f"v{number:07d}"
        folder.mkdir()
        doc = {
            **metadata[k],
            "attributes": {
                **metadata[k]["attributes"],
                "source": f"all/v{number:07d}.mp4",
                "write_id": uuid.uuid4().hex[:16],
            },
        }
        (folder / "zarr.json").write_text(json.dumps(doc))
        for array in arrays[k]:
            # Hard links: regular files inside the store (comode refuses symbolic links that
            # lead out of a store), as cheap as a link and sharing the template's bytes.
            shutil.copytree(array.resolve(), folder / array.name, copy_function=os.link)
    return time.perf_counter() - start


def timed(command: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of ``command`` and the processes it waited for (DataLoader workers, ...).

    Both: on a shared machine wall time also measures the wait for a free core; CPU time is
    what the operation itself costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def without_index(store: Path):
    """Context: the store's index moved aside (readers fall back to scanning every group)."""

    class _Aside:
        def __enter__(self):
            (store / "index").rename(store / "index.aside")

        def __exit__(self, *exc):
            (store / "index.aside").rename(store / "index")

    return _Aside()


def pretrain_command(store: str, out: Path) -> list[str]:
    """One step of the CPU configuration: start to first step (and its exit)."""
    shutil.rmtree(out, ignore_errors=True)
    return [
        *COMODE,
        "train",
        "pretrain",
        "--store",
        store,
        "--config",
        str(REPO / "configs/pretrain/tiny_cpu.yaml"),
        "--out",
        str(out),
        "--no-progress",
        "max_steps=1",
        "save_every_steps=1000",
        "data.workers=1",
    ]


def measure_local(store: Path, videos: int, work: Path, validate: bool) -> dict:
    """Wall and CPU seconds of each operation, with the index and with the scan fallback."""
    row: dict = {"videos": videos}
    row["reindex (full scan)"] = timed([*COMODE, "store", "reindex", str(store)])
    row["info"] = timed([*COMODE, "store", "info", str(store)])
    row["pretrain to step 1"] = timed(pretrain_command(str(store), work / "run"))
    with without_index(store):
        row["info, scan fallback"] = timed([*COMODE, "store", "info", str(store)])
        row["pretrain to step 1, scan fallback"] = timed(pretrain_command(str(store), work / "run"))
    if validate:
        row["validate"] = timed([*COMODE, "store", "validate", "--no-progress", str(store)])
    return row


def measure_s3(store: Path, videos: int, work: Path, fallback: bool) -> dict:
    """Upload the metadata of ``store`` to a loopback S3 server; time opening it there."""
    import logging

    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(
            HOME=str(work / "home"),
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        (work / "home").mkdir(exist_ok=True)
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=env["AWS_ENDPOINT_URL"])
        url = f"s3://{BUCKET}/scale.zarr"
        files = {
            f"{BUCKET}/scale.zarr/{path.relative_to(store)}": path.read_bytes()
            for path in [
                store / "zarr.json",
                store / "videos" / "zarr.json",
                *(store / "videos").glob("*/zarr.json"),
                *(store / "index").glob("*.json"),
            ]
        }
        start = time.perf_counter()
        fs.pipe(files)
        upload = time.perf_counter() - start
        opening = [
            sys.executable,
            "-c",
            "import sys; from comode.store import open_store; print(len(open_store(sys.argv[1]).video_ids()))",
            url,
        ]
        row = {
            "videos": videos,
            "upload (metadata only)": (upload, float("nan")),
            "open + list": timed(opening, env, work),
            "info": timed([*COMODE, "store", "info", url], env, work),
        }
        if fallback:  # moto answers ~10 GETs/s per core here: minutes at 1k, hours at 10k
            fs.rm(f"{BUCKET}/scale.zarr/index", recursive=True)
            row["open + list, scan fallback"] = timed(opening, env, work)
        return row
    finally:
        server.stop()


def growth(rows: list[dict], which: int) -> dict:
    """Microseconds per added video between the smallest and the largest size (which: 0 wall, 1 CPU)."""
    small, large = rows[0], rows[-1]
    span = large["videos"] - small["videos"]
    return {
        key: (large[key][which] - small[key][which]) / span * 1e6
        for key in large
        if key != "videos" and key in small and span > 0
    }


def show(title: str, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(key for row in rows for key in row if key != "videos"))
    print(f"\n{title}: wall s / CPU s, a fresh process each, start to exit")
    for key in keys:
        cells = [f"{row['videos']}: {row[key][0]:.1f} / {row[key][1]:.1f}" for row in rows if key in row]
        print(f"  {key:<36} " + " | ".join(cells))
    if len(rows) > 1:
        for which, name in ((0, "wall"), (1, "CPU")):
            print(
                f"growth per video ({name}): "
                + ", ".join(f"{key} {value:.0f} us" for key, value in growth(rows, which).items())
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,240000", help="store sizes, comma-separated")
    parser.add_argument("--s3-size", type=int, default=10000, help="size opened on the loopback S3 server (0: skip)")
    parser.add_argument(
        "--s3-fallback",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also time the scan fallback on S3 (slow on moto: ~0.1 s a video)",
    )
    parser.add_argument("--validate-max", type=int, default=50000, help="skip `store validate` above this size")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="comode-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    check_disk(work, [max(sizes)])  # one store at a time
    template = template_store(work)
    local, s3 = [], []
    try:
        for videos in sizes:
            store = work / "scale.zarr"
            built = build_store(template, store, videos)
            print(f"{videos} videos: built in {built:.0f} s", flush=True)
            local.append(measure_local(store, videos, work, validate=videos <= args.validate_max))
            print(json.dumps(local[-1]), flush=True)
            if videos == args.s3_size:
                s3.append(measure_s3(store, videos, work, args.s3_fallback))
                print(json.dumps(s3[-1]), flush=True)
            shutil.rmtree(store)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    show("local disk", local)
    if s3:
        show("loopback S3 (moto), metadata only", s3)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "local": local,
                    "s3": s3,
                    "growth_us_per_video": {"wall": growth(local, 0), "cpu": growth(local, 1)}
                    if len(local) > 1
                    else {},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
