"""The whole user path on an S3-compatible server, configured only through ``AWS_*`` variables.

A real S3 server (moto's, in this process, on 127.0.0.1) and real ``comode`` processes:
extract a labelled folder into ``s3://bucket/x.zarr`` (Dask), ``store validate --data``,
a few pretraining steps (DataLoader workers reading S3 through tensorstore), retrieval;
then a damaged object is found by ``validate --data``.  The commands get nothing but the
standard AWS environment (endpoint, keys, region) and a HOME without ~/.aws.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.commands import comode_command, extract_folder_args, pretrain_tiny_args

pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")

BUCKET = "comode-test"
VIDEOS = {  # folder dataset: train/ and test/ define split "1"; class = motion direction
    "train/right/a.avi": (2, 0),
    "train/right/b.avi": (3, 0),
    "train/down/c.avi": (0, 2),
    "train/down/d.avi": (0, 3),
    "test/right/e.avi": (2, 0),
    "test/down/f.avi": (0, 2),
}


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """Environment of a user whose S3 is the loopback server: AWS_* variables only."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path_factory.mktemp("home")),
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    yield env, client
    server.stop()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from tests.videos import translating_frames, write_video

    root = tmp_path_factory.mktemp("videos")
    for number, (relative, (dx, dy)) in enumerate(VIDEOS.items()):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / relative, translating_frames(frames=80, width=170, height=128, dx=dx, dy=dy, seed=number))
    return root


def _comode(env: dict, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """A comode command run in the fake HOME (an extraction into a remote store logs to ./<name>.log)."""
    return subprocess.run(
        comode_command(*args), env=env, cwd=env["HOME"], text=True, capture_output=True, timeout=timeout
    )


@pytest.mark.slow
def test_extract_validate_pretrain_and_retrieve_on_s3(s3_env, videos, tmp_path):
    env, client = s3_env
    store = f"s3://{BUCKET}/x.zarr"

    ran = _comode(env, *extract_folder_args(videos, store, "--workers", "1"))
    assert ran.returncode == 0, ran.stderr
    keys = {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET, Prefix="x.zarr/")["Contents"]}
    assert "x.zarr/zarr.json" in keys and "x.zarr/videos/train__right__a.avi/mvs/zarr.json" in keys
    assert "x.zarr/index/snapshot.json" in keys  # the run consolidated its journals into the index
    again = _comode(env, *extract_folder_args(videos, store, "--workers", "0"))
    assert again.returncode == 0 and "6 already complete" in again.stderr  # resumes: reads the store back
    assert "extract: 6/6 videos (100.0%)" in (Path(env["HOME"]) / "x.zarr.log").read_text()

    ran = _comode(env, "store", "validate", store, "--data")
    assert ran.returncode == 0 and "valid" in ran.stdout, ran.stderr
    assert "index: matches the groups" in ran.stdout
    ran = _comode(env, "store", "info", store)  # listed from the index on S3, not by reading every group
    assert ran.returncode == 0 and re.search(r"listed from\s+index", ran.stdout) and "index" not in ran.stderr, (
        ran.stdout + ran.stderr
    )

    run = tmp_path / "run"
    ran = _comode(env, *pretrain_tiny_args(store, run, "max_steps=2", "optim.epochs=1"))
    assert ran.returncode == 0, ran.stderr
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and all(s["skipped_videos"] == 0 for s in steps)

    eval_options = ["--checkpoint", run / "last.pt", "--out", tmp_path / "eval", "--workers", "1", "--size", "64"]
    eval_options += ["--device", "cpu", "--picture", "0"]
    ran = _comode(env, "evaluate", "retrieval", "--store", store, *eval_options)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(next((tmp_path / "eval").glob("*.json")).read_text())
    assert report["counts"]["queries"] == 2 and not report["counts"].get("failed")

    # A flipped byte in one object: validate --data names the video and the array.
    key = "x.zarr/videos/test__down__f.avi/rgb_stream/c/0"
    body = bytearray(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    ran = _comode(env, "store", "validate", store, "--data")
    assert ran.returncode == 1 and "videos/test__down__f.avi: rgb_stream data unreadable" in ran.stderr


def test_writes_and_reads_need_only_the_aws_environment(s3_env, monkeypatch):
    """The endpoint comes from AWS_ENDPOINT_URL (botocore's resolver) for fsspec and
    tensorstore alike: a group written through the object sink reads back through
    tensorstore, the same values as zarr-python reads."""
    import numpy as np
    import zarr

    from comode.store import VideoArrays, create_or_open_root, open_store, write_video
    from comode.store.arrays import StoredArray
    from comode.store.location import kvstore, s3_endpoint
    from comode.store.writer import open_root_for_writing

    env, _ = s3_env
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key in ("HOME", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])
    s3_endpoint.cache_clear()
    url = f"s3://{BUCKET}/y.zarr"
    assert kvstore(f"{url}/videos/v/mvs")["endpoint"] == env["AWS_ENDPOINT_URL"]
    rng = np.random.default_rng(0)
    t, stream = 70, rng.integers(1, 255, 3000, dtype=np.uint8)
    arrays = VideoArrays(
        frame_types=np.frombuffer((b"I" + b"P" * 11) * 6, np.uint8)[:t].copy(),
        iframes=rng.integers(0, 255, (6, 8, 10, 3), dtype=np.uint8),
        iframe_index=np.arange(0, t, 12, dtype=np.int32),
        mvs=rng.integers(-8, 8, (t, 2, 4, 5), dtype=np.int16),
        rgb_stream=stream,
        rgb_stream_offsets=np.linspace(0, stream.size, t + 1).astype(np.int64),
    )
    # The sizes readers bound each array by (comode.store.bounds): a 4x5 MV grid, 10x8 RGB.
    extraction = {"width": 80, "height": 64, "mv_cell": 16, "rgb_width": 10, "rgb_height": 8}
    create_or_open_root(url, root_attrs={"schema": "comode.store/1", "dataset": {}, "extraction": extraction})
    write_video(open_root_for_writing(url), "v", {"source": "v", "label": -1, "splits": {}, "frames": t}, arrays)
    video = open_store(url, validate=False).video("v")
    assert video.is_complete and isinstance(video.mvs, StoredArray)
    plain = zarr.open_group(url, mode="r")["videos/v"]
    np.testing.assert_array_equal(video.mvs[30:66], arrays.mvs[30:66])
    np.testing.assert_array_equal(video.mvs.oindex[[69, 2, 40]], plain["mvs"].oindex[[69, 2, 40]])
    np.testing.assert_array_equal(video.iframes[5], arrays.iframes[5])
    s3_endpoint.cache_clear()
