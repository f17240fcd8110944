"""Fixtures for the fault tests: tiny synthetic datasets, the bad-input corpus, run helpers.

Helpers are handed out as fixtures (pytest runs in importlib mode: test modules cannot
import each other or this file).
"""

from __future__ import annotations

import os
import shutil
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import zarr

from tests.commands import COMODE, EIGHT_K_MPEG4, run_ffmpeg
from tests.videos import translating_frames, write_video

# ------------------------------------------------------------------ tiny synthetic folders


def make_tiny_folder(root: Path, count: int, *, frames: int = 30, size: tuple[int, int] = (64, 48)) -> Path:
    """``count`` tiny lossless synthetic videos in two classes, each with its own motion."""
    width, height = size
    for number in range(count):
        folder = root / ("left" if number % 2 else "right")
        folder.mkdir(parents=True, exist_ok=True)
        dx = -(1 + number % 3) if number % 2 else 1 + number % 3
        write_video(
            folder / f"video{number:02d}.mkv",
            translating_frames(
                frames=frames + 3 * number, width=width, height=height, dx=dx, dy=number % 2, seed=number
            ),
        )
    return root


@pytest.fixture(scope="session")
def tiny_folder_factory() -> Callable[..., Path]:
    return make_tiny_folder


@pytest.fixture(scope="session")
def reference_set(tmp_path_factory) -> Callable[[int], tuple[Path, str]]:
    """``reference_set(n)`` -> (folder of n tiny 96x72 videos, its store from one uninterrupted
    sequential extraction): what every interrupted run must equal.  Made once per n."""
    from comode.extract.datasets import load_dataset
    from comode.extract.executors import SequentialExecutor
    from comode.extract.pipeline import run_extraction
    from comode.extract.settings import ExtractSettings

    made: dict[int, tuple[Path, str]] = {}

    def make(count: int) -> tuple[Path, str]:
        if count not in made:
            folder = make_tiny_folder(tmp_path_factory.mktemp("videos"), count, frames=60, size=(96, 72))
            url = str(tmp_path_factory.mktemp("reference") / "ref.zarr")
            summary = run_extraction(load_dataset("folder", folder), url, ExtractSettings(), SequentialExecutor())
            assert summary.ok and summary.completed == count
            made[count] = folder, url
        return made[count]

    return make


@pytest.fixture(scope="module")
def two_video_store(tmp_path_factory, tiny_folder_factory) -> tuple[Path, Path]:
    """(source folder, store) of two tiny 13-frame videos, extracted once per module: what
    the hostile-store and bounded-read tests edit copies of."""
    from comode.extract.datasets import load_dataset
    from comode.extract.executors import SequentialExecutor
    from comode.extract.pipeline import run_extraction
    from comode.extract.settings import ExtractSettings

    base = tmp_path_factory.mktemp("two-videos")
    folder = make_tiny_folder(base / "videos", 2, frames=13)
    store = base / "store.zarr"
    assert run_extraction(load_dataset("folder", folder), str(store), ExtractSettings(), SequentialExecutor()).ok
    return folder, store


@pytest.fixture(scope="module")
def larger_frames(two_video_store, tmp_path_factory) -> Callable[[Path, str], None]:
    """``larger_frames(group, video)`` puts into ``group`` (a video group of a copy of
    ``two_video_store``'s store) the stream of ``video`` extracted at 640x480: a valid MPEG-2
    stream of frames larger than the store's 170x128 (the issue's were 8000x4000; 640x480
    shows the same checks without the memory).  Extracted once per module."""
    from comode.extract.datasets import load_dataset
    from comode.extract.executors import SequentialExecutor
    from comode.extract.pipeline import run_extraction
    from comode.extract.settings import ExtractSettings

    large = tmp_path_factory.mktemp("larger-frames") / "large.zarr"
    settings = ExtractSettings(rgb_width=640, rgb_height=480)
    assert run_extraction(load_dataset("folder", two_video_store[0]), str(large), settings, SequentialExecutor()).ok

    def put(group: Path, video: str) -> None:
        for array in ("rgb_stream", "rgb_stream_offsets"):
            shutil.rmtree(group / array)
            shutil.copytree(large / "videos" / video / array, group / array)

    return put


@pytest.fixture
def store(two_video_store, tmp_path) -> Path:
    """A fresh copy of ``two_video_store``'s store, in this test's own folder (a module may
    define its own ``store``)."""
    copy = tmp_path / "store.zarr"
    shutil.copytree(two_video_store[1], copy, symlinks=True)
    return copy


def _module_videos(request) -> int:
    count = getattr(request.module, "VIDEOS", None)
    if count is None:
        raise RuntimeError(f"{request.module.__name__} uses the folder/reference fixtures: set VIDEOS = n there")
    return count


@pytest.fixture(scope="module")
def folder(reference_set, request) -> Path:
    """The module's reference videos: ``VIDEOS`` (a module constant) tiny clips."""
    return reference_set(_module_videos(request))[0]


@pytest.fixture(scope="module")
def reference(reference_set, request) -> str:
    """The store of one uninterrupted extraction of ``folder``."""
    return reference_set(_module_videos(request))[1]


def complete_count(url: str) -> int:
    """Complete videos in the store at ``url`` read with plain zarr (0 while it does not exist)."""
    try:
        # A killed writer's temporary file, or a group zarr is creating right now (folder first,
        # zarr.json after): "not recognized as a component", read here while extraction runs.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Object at .* is not recognized")
            videos = zarr.open_group(url, mode="r")["videos"]
            return sum(g.attrs.get("status") == "complete" for _, g in videos.groups())
    except Exception:
        return 0


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


@dataclass(frozen=True)
class Helpers:
    complete_count: Callable[[str], int] = staticmethod(complete_count)
    wait_for: Callable[..., bool] = staticmethod(wait_for)
    comode: tuple[str, ...] = tuple(COMODE)


@pytest.fixture(scope="session")
def helpers() -> Helpers:
    return Helpers()


# ------------------------------------------------------------------ the bad-input corpus


@dataclass(frozen=True)
class Case:
    """One file of the corpus and what extraction must make of it.

    outcome: "complete" (sane arrays, ``frames`` in the given range), "failed" (reason
    matching ``reason``, a regular expression), or "either" (a damaged but partly readable
    file: complete with frames in range, or failed with a reason matching ``reason``).
    """

    relative: str
    outcome: str
    reason: str = ""
    frames: tuple[int, int] = (1, 10**6)


def _patch_avi_frame_count(path: Path, frames: int) -> None:
    """Overwrite the AVI main header's dwTotalFrames and the stream header's dwLength (a lie)."""
    data = bytearray(path.read_bytes())
    avih = data.index(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, frames)  # MainAVIHeader.dwTotalFrames
    strh = data.index(b"strh")
    struct.pack_into("<I", data, strh + 8 + 32, frames)  # AVIStreamHeader.dwLength
    path.write_bytes(bytes(data))


def build_corpus(root: Path) -> dict[str, Case]:
    """Write the bad-input corpus under ``root/<class>/`` (folder layout); returns source -> Case.

    Keys are paths relative to ``root`` (the ``source`` attribute of each group).  Every file is tiny (64x48, a
    few frames) except the odd-size (341x257) and the 8K (7680x4320, two frames) ones.
    """
    good_dir, bad_dir = root / "good", root / "bad"
    good_dir.mkdir(parents=True)
    bad_dir.mkdir()
    cases: dict[str, Case] = {}

    def add(relative: str, case_outcome: str, reason: str = "", frames: tuple[int, int] = (1, 10**6)) -> None:
        cases[relative] = Case(relative, case_outcome, reason, frames)

    # Two plain good videos (the "others" whose data must stay intact), one in MPEG-4/MP4.
    write_video(good_dir / "plain.mkv", translating_frames(frames=30, width=64, height=48, dx=2, dy=0, seed=1))
    add("good/plain.mkv", "complete", frames=(30, 30))
    mp4 = write_video(
        good_dir / "plain_mpeg4.mp4",
        translating_frames(frames=36, width=64, height=48, dx=0, dy=2, seed=2),
        codec="mpeg4",
    )
    add("good/plain_mpeg4.mp4", "complete", frames=(36, 36))
    data = mp4.read_bytes()

    # Truncated at several offsets (ffmpeg's MP4 has its index, moov, at the end).
    for percent in (1, 10, 50, 90, 99):
        (bad_dir / f"truncated_{percent:02d}.mp4").write_bytes(data[: len(data) * percent // 100])
        add(
            f"bad/truncated_{percent:02d}.mp4",
            "failed",
            r"^not a readable video \((moov atom not found: truncated|invalid data\))",
        )
    # Truncated in the middle of the frames of a streamable container: the frames before the cut.
    avi = write_video(
        bad_dir / "cut_stream.avi",
        translating_frames(frames=40, width=64, height=48, dx=1, dy=1, seed=3),
        codec="mpeg4",
    )
    avi_bytes = avi.read_bytes()
    avi.write_bytes(avi_bytes[: len(avi_bytes) // 2])
    add("bad/cut_stream.avi", "either", r"\S", frames=(1, 39))

    (bad_dir / "zero.mp4").write_bytes(b"")
    add("bad/zero.mp4", "failed", r"^empty file \(0 bytes\)$")
    (bad_dir / "random.mp4").write_bytes(np.random.default_rng(7).bytes(40_000))
    add("bad/random.mp4", "failed", r"^not a readable video \((invalid data|moov atom not found)")
    (bad_dir / "random.mkv").write_bytes(np.random.default_rng(9).bytes(40_000))
    add("bad/random.mkv", "failed", r"^not a readable video \(invalid data\)$")
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-c:a", "aac", str(bad_dir / "audio_only.mp4"))
    add("bad/audio_only.mp4", "failed", r"^no video stream in file$")

    write_video(good_dir / "one_frame.mkv", translating_frames(frames=1, width=64, height=48, dx=0, dy=0))
    add("good/one_frame.mkv", "complete", frames=(1, 1))
    write_video(good_dir / "odd_341x257.mkv", translating_frames(frames=13, width=341, height=257, dx=1, dy=1))
    add("good/odd_341x257.mkv", "complete", frames=(13, 13))
    # 8K: 7680x4320, two frames (the coarsest quantiser keeps the file small).
    run_ffmpeg(*EIGHT_K_MPEG4, str(good_dir / "8k.mp4"))
    add("good/8k.mp4", "complete", frames=(2, 2))
    # Variable frame rate: 40 ms steps for 11 frames, then 100 ms steps (Matroska ms timestamps).
    run_ffmpeg(
        *"-f lavfi -i testsrc2=size=64x48:rate=25:duration=1 -vf".split(),
        r"setpts=(N*40+gt(N\,10)*(N-10)*60)/1000/TB",
        *"-fps_mode passthrough -c:v ffv1".split(),
        str(good_dir / "vfr.mkv"),
    )
    add("good/vfr.mkv", "complete", frames=(25, 25))
    # Rotation metadata (display matrix 90 degrees): ffmpeg applies it while decoding.
    run_ffmpeg(
        *"-f lavfi -i testsrc2=size=64x48:rate=25:duration=0.5 -c:v mpeg4".split(), str(bad_dir / "unrotated.tmp.mp4")
    )
    run_ffmpeg(
        "-display_rotation", "90", "-i", str(bad_dir / "unrotated.tmp.mp4"), "-c", "copy", str(good_dir / "rotated.mp4")
    )
    (bad_dir / "unrotated.tmp.mp4").unlink()
    add("good/rotated.mp4", "complete", frames=(12, 13))
    # Phone-like (issue 14): audio as stream 0, time base 1/26777, ~26.8 fps with 0-5.6 ms of
    # jitter -- two frames land on one tick of the MPEG-2 encoder's clock ("Invalid pts").
    run_ffmpeg(
        *(
            "-f lavfi -i sine=duration=1.4 -f lavfi -i testsrc2=size=64x48:rate=27:duration=1.26 -map 0:a -map 1:v "
            "-c:a aac -vf settb=1/26777,setpts=N*1000+150*random(0) -fps_mode passthrough -enc_time_base:v 1/26777 "
            "-c:v libx264 -pix_fmt yuv420p -video_track_timescale 26777"
        ).split(),
        str(good_dir / "phone_vfr_odd_timebase.mp4"),
    )
    add("good/phone_vfr_odd_timebase.mp4", "complete", frames=(35, 35))
    # A portrait phone video: HEVC in MOV, audio first, display matrix -90 degrees.
    run_ffmpeg(
        *"-f lavfi -i testsrc2=size=64x48:rate=25:duration=0.52 -c:v libx265 -x265-params log-level=error -tag:v hvc1".split(),
        str(bad_dir / "landscape.tmp.mov"),
    )
    run_ffmpeg(
        *"-f lavfi -i sine=duration=0.6 -display_rotation -90 -i".split(),
        str(bad_dir / "landscape.tmp.mov"),
        *"-map 0:a -map 1:v -c:v copy -c:a aac".split(),
        str(good_dir / "portrait_rotated_270.mov"),
    )
    (bad_dir / "landscape.tmp.mov").unlink()
    add("good/portrait_rotated_270.mov", "complete", frames=(13, 13))
    # Every timestamp twice (Matroska allows it), and a frame size that changes mid-stream.
    run_ffmpeg(
        *"-f lavfi -i testsrc2=size=64x48:rate=25:duration=0.8 -vf setpts=floor(N/2)*0.08/TB".split(),
        *"-fps_mode passthrough -c:v ffv1".split(),
        str(good_dir / "repeated_timestamps.mkv"),
    )
    add("good/repeated_timestamps.mkv", "complete", frames=(20, 20))
    for size, part in (("64x48", "a"), ("48x32", "b")):
        run_ffmpeg(
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate=25:duration=0.48",
            *"-c:v libx264 -pix_fmt yuv420p".split(),
            str(bad_dir / f"part_{part}.tmp.ts"),
        )
    (good_dir / "size_change.ts").write_bytes(b"".join((bad_dir / f"part_{p}.tmp.ts").read_bytes() for p in "ab"))
    for part in "ab":
        (bad_dir / f"part_{part}.tmp.ts").unlink()
    add("good/size_change.ts", "complete", frames=(24, 24))
    # Wrong extension: a Matroska file named .avi (ffmpeg probes the content, not the name).
    write_video(bad_dir / "matroska.mkv", translating_frames(frames=15, width=64, height=48, dx=1, dy=0, seed=4))
    (bad_dir / "matroska.mkv").rename(good_dir / "really_matroska.avi")
    add("good/really_matroska.avi", "complete", frames=(15, 15))
    # Corrupt packets in the middle: 1.5 KB of noise a third of the way into the MP4's data.
    corrupt = bytearray(data)
    corrupt[len(data) // 3 : len(data) // 3 + 1500] = np.random.default_rng(8).bytes(1500)
    (bad_dir / "corrupt_middle.mp4").write_bytes(bytes(corrupt))
    add("bad/corrupt_middle.mp4", "either", r"\S", frames=(1, 40))
    # A container whose declared frame count lies (AVI headers say 100000; 20 frames inside).
    liar = write_video(
        good_dir / "false_count.avi",
        translating_frames(frames=20, width=64, height=48, dx=1, dy=0, seed=5),
        codec="mpeg4",
    )
    _patch_avi_frame_count(liar, 100_000)
    add("good/false_count.avi", "complete", frames=(20, 20))
    # Spaces and unicode in the path (the id is made safe; the source path is kept as is).
    write_video(good_dir / "ünï cödé 日本 clip.mkv", translating_frames(frames=12, width=64, height=48, dx=1, dy=0))
    add("good/ünï cödé 日本 clip.mkv", "complete", frames=(12, 12))
    # A symlink loop (a -> b -> a) and a dangling symlink, both with video extensions.
    os.symlink("loop_b.mp4", bad_dir / "loop_a.mp4")
    os.symlink("loop_a.mp4", bad_dir / "loop_b.mp4")
    add("bad/loop_a.mp4", "failed", r"^symbolic link loop$")
    add("bad/loop_b.mp4", "failed", r"^symbolic link loop$")
    os.symlink("nowhere.mp4", bad_dir / "dangling.mp4")
    add("bad/dangling.mp4", "failed", r"^broken symbolic link")
    # Files that never end or never open: a FIFO nobody writes, a link to /dev/zero.
    os.mkfifo(bad_dir / "fifo.mp4")
    add("bad/fifo.mp4", "failed", r"^not a regular file \(FIFO\)$")
    os.symlink("/dev/zero", bad_dir / "dev_zero.mkv")
    add("bad/dev_zero.mkv", "failed", r"^not a regular file \(device\)$")
    # A file that vanishes during the run: the test deletes it after the first result.
    # It sorts last ("zz" class), so it is queued behind everything else.
    (root / "zz").mkdir()
    write_video(root / "zz" / "vanishes.mkv", translating_frames(frames=12, width=64, height=48, dx=1, dy=0))
    add("zz/vanishes.mkv", "failed", r"^file not found \(deleted or moved")
    return cases


@pytest.fixture(scope="session")
def corpus_factory() -> Callable[[Path], dict[str, Case]]:
    return build_corpus


# ------------------------------------------------------------------ a real S3 server on loopback


@dataclass(frozen=True)
class S3Bucket:
    """A bucket on a real S3 server (moto's) on 127.0.0.1, and what a test does with it."""

    endpoint: str
    name: str = "comode-test"

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )

    def upload(self, local: Path, prefix: str) -> str:
        """Every file under the folder ``local`` as an object under ``prefix``: its s3:// URL."""
        client = self.client()
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            client.upload_file(str(path), self.name, f"{prefix}/{path.relative_to(local).as_posix()}")
        return f"s3://{self.name}/{prefix}"

    def environment(self, tmp_path: Path, *, endpoint: str | None = None, credentials: bool = True) -> dict[str, str]:
        """A user's AWS environment: the endpoint (this server's unless given), keys or none, a
        HOME without ~/.aws.  One attempt per request and no instance-metadata lookup, so that
        a command that cannot reach the server fails at once."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(
            HOME=str(tmp_path / "home"),
            AWS_ENDPOINT_URL=endpoint or self.endpoint,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_MAX_ATTEMPTS="1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        if credentials:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        return env


@pytest.fixture(scope="module")
def s3_bucket():
    """An empty bucket on a real S3 server (moto's) on loopback, for the module's tests."""
    pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    bucket = S3Bucket(endpoint=f"http://{host}:{port}")
    bucket.client().create_bucket(Bucket=bucket.name)
    yield bucket
    server.stop()
