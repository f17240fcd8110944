"""A store from elsewhere cannot size a reader's memory (issue 25, "bounded reads").

A real store made by the package's own extraction, one video's metadata then rewritten as a
hostile source would, with zarr: an ``rgb_stream`` whose one chunk is declared 8 GiB (its
file a 256 KiB zstd frame that does decode to 8 GiB), an ``iframe_index`` declared 8 GiB
with no chunk at all (read back as zeros), ``frames=400000000``.  Each runs in a process
limited to 4 GiB of address space (the issue's ``ulimit -v 4G``): ``store validate --data``
names the video and the reason and exits 1, training skips and counts it, evaluation
records it.  Before, each of them aborted (``std::bad_alloc``) or ran out of memory.
"""

from __future__ import annotations

import json
import resource
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import layout, open_store
from comode.store.bounds import OversizedVideo, array_problem
from comode.store.index import reindex
from comode.store.schema import SchemaError
from comode.store.validate import validate_store
from comode.store.zarr_files import chunk_layout
from tests.commands import comode_command

VIDEO = "left__video01.mkv"  # the video made hostile; the store's other one stays good
GOOD = "right__video00.mkv"
MEMORY_LIMIT = 4 << 30  # RLIMIT_AS of the processes below: the issue's `ulimit -v 4G`
DECLARED = 8 << 30  # what the hostile metadata declares: twice that limit


def _zstd_frame(data: bytes, size: int) -> bytes:
    """One zstd frame decoding to ``data`` followed by zeros up to ``size`` bytes: ``data``
    in raw blocks, the zeros in run-length blocks of 128 KiB (4 bytes each, so 8 GiB of them
    take 256 KiB).  Written by hand: compressing 8 GiB would take the test's time and memory."""
    block = 128 << 10
    frame = bytearray(struct.pack("<I", 0xFD2FB528))  # magic number
    frame += bytes([0b11000000, (17 - 10) << 3])  # 8-byte content size follows; window 2**17
    frame += struct.pack("<Q", size)
    blocks = [(0, data[i : i + block]) for i in range(0, len(data), block)]  # type 0: raw
    blocks += [(1, min(block, size - offset)) for offset in range(len(data), size, block)]  # type 1: RLE
    for number, (kind, body) in enumerate(blocks):
        length = len(body) if kind == 0 else body
        last = number == len(blocks) - 1
        frame += (last | kind << 1 | length << 3).to_bytes(3, "little")
        frame += body if kind == 0 else b"\0"
    return bytes(frame)


def _replace_array(group: Path, name: str, *, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str):
    """``group/name`` made anew by zarr with this metadata (zstd-compressed), no chunk written."""
    shutil.rmtree(group / name)
    zarr.create_array(
        str(group / name),
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        serializer=BytesCodec(),
        compressors=ZstdCodec(level=1),
        fill_value=0,
        dimension_names=layout.DIMENSION_NAMES[name],
    )


def _chunk_declared_8_gib(store: Path) -> str:
    """The stream's real bytes in one chunk declared 8 GiB: a 256 KiB file."""
    group = store / "videos" / VIDEO
    stream = zarr.open_array(str(group / "rgb_stream"), mode="r")[...].tobytes()
    _replace_array(group, "rgb_stream", shape=(len(stream),), chunks=(DECLARED,), dtype="uint8")
    chunk = group / "rgb_stream" / "c" / "0"
    chunk.parent.mkdir(parents=True)
    chunk.write_bytes(_zstd_frame(stream, DECLARED))
    assert chunk.stat().st_size < len(stream) + (300 << 10)
    return f"rgb_stream declares chunks [{DECLARED}], larger than its shape [{len(stream)}] allows"


def _huge_shape_no_chunks(store: Path) -> str:
    """2**31 I-frame numbers (int32: 8 GiB), in one chunk as the layout has it, never written."""
    rows = DECLARED // 4
    _replace_array(store / "videos" / VIDEO, "iframe_index", shape=(rows,), chunks=(rows,), dtype="int32")
    return f"iframe_index shape ({rows},), expected (K,) with K <= 16, the video's frames"


def _frames_400_million(store: Path) -> str:
    path = store / "videos" / VIDEO / "zarr.json"
    document = json.loads(path.read_text())
    document["attributes"]["frames"] = 400_000_000
    path.write_text(json.dumps(document))
    reindex(str(store), scan=open_store(str(store)).scan_groups)  # the index agrees: listings carry it too
    return f"frames is 400000000, more than the {layout.MAX_FRAMES} a store's video may have"


HOSTILE = {
    "one chunk declared 8 GiB": _chunk_declared_8_gib,
    "8 GiB declared shape, missing chunks": _huge_shape_no_chunks,
    "frames=400000000": _frames_400_million,
}

# What training and evaluation read, in a process of their own: the samples of every video
# (a video that fails is replaced and counted), then every video's test clips.
READERS = textwrap.dedent("""
    import json, sys
    from comode.evaluate.clips import VideoClips, usable_batches
    from comode.train.data import PretrainDataset
    training = PretrainDataset(sys.argv[1])
    for index in range(len(training)):
        training[index]
    evaluation = {}
    for _ in usable_batches(VideoClips(sys.argv[1], training.video_ids), batch_size=2, workers=0, failures=evaluation):
        pass
    print(json.dumps({"skipped": training.skipped, "training": training.failures, "evaluation": evaluation}))
""")


def _limited(command: list[str]) -> subprocess.CompletedProcess:
    """``command`` in a process limited to MEMORY_LIMIT bytes of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=limit)


@pytest.mark.parametrize("case", HOSTILE)
def test_a_video_whose_metadata_asks_for_gigabytes_is_refused_by_name_in_bounded_memory(store, case):
    reason = HOSTILE[case](store)

    validate = _limited(comode_command("store", "validate", "--data", "--no-progress", store))
    assert validate.returncode == 1, validate.stdout + validate.stderr[-3000:]
    assert "Traceback" not in validate.stderr, validate.stderr[-3000:]
    lines = [line for line in validate.stderr.splitlines() if line.startswith("invalid")]
    assert len(lines) == 1 and lines[0].startswith(f"invalid videos/{VIDEO}: {reason}"), validate.stderr

    readers = _limited([sys.executable, "-c", READERS, str(store)])
    assert readers.returncode == 0, readers.stderr[-3000:]
    outcome = json.loads(readers.stdout.splitlines()[-1])
    assert outcome["skipped"] >= 1  # the hostile video, replaced by the good one
    for failures in (outcome["training"], outcome["evaluation"]):
        assert list(failures) == [VIDEO], failures
        assert failures[VIDEO].startswith(f"OversizedVideo: video '{VIDEO}': {reason}"), failures[VIDEO]


def test_the_good_store_reads_in_the_same_bounds(two_video_store):
    """The limit and the readers above are not what refuses: the unedited store passes."""
    validate = _limited(comode_command("store", "validate", "--data", "--no-progress", two_video_store[1]))
    assert validate.returncode == 0, validate.stdout + validate.stderr[-3000:]
    readers = _limited([sys.executable, "-c", READERS, str(two_video_store[1])])
    assert readers.returncode == 0, readers.stderr[-3000:]
    assert json.loads(readers.stdout.splitlines()[-1]) == {"skipped": 0, "training": {}, "evaluation": {}}


def test_offsets_that_make_one_packet_megabytes_are_refused_before_the_span_is_read(store):
    """A span of the stream is read whole, sized by the offsets: a 2 MB ``rgb_stream`` (as
    long as 16 frames may have) whose last frame's packet takes all the bytes after the real
    ones.  (At ``layout.MAX_FRAMES`` frames the same offsets could name 500 GB.)"""
    group = store / "videos" / VIDEO
    stream = zarr.open_array(str(group / "rgb_stream"), mode="r")[...]
    size = 2_000_000
    shard = -(-size // layout.RGB_STREAM_CHUNK_BYTES) * layout.RGB_STREAM_CHUNK_BYTES  # as the layout has it
    shutil.rmtree(group / "rgb_stream")
    zarr.create_array(
        str(group / "rgb_stream"),
        shape=(size,),
        chunks=(layout.RGB_STREAM_CHUNK_BYTES,),
        shards=(shard,),
        dtype="uint8",
        fill_value=0,
        dimension_names=layout.DIMENSION_NAMES["rgb_stream"],
    )[: len(stream)] = stream
    zarr.open_array(str(group / "rgb_stream_offsets"), mode="r+")[-1] = size

    video = open_store(str(store)).video(VIDEO)
    with pytest.raises(OversizedVideo, match=r"rgb_stream_offsets give 4 frame\(s\) \d+ bytes, more than the 522240"):
        video.decode_frames([15])  # frames 12 (its I-frame) to 15
    problems = validate_store(str(store)).problems
    assert problems == [
        f"videos/{VIDEO}: rgb_stream_offsets give frame 15 a packet of {size - int(video.rgb_stream_offsets[15])} bytes, more than the 130560 a frame may have at the store's RGB size"
    ]


def test_a_root_whose_sizes_no_mpeg2_stream_has_is_refused_at_open(store):
    """The limits above come from the root's settings: those are bounded by its schema."""
    path = store / "zarr.json"
    document = json.loads(path.read_text())
    document["attributes"]["extraction"]["rgb_width"] = 10**9
    path.write_text(json.dumps(document))
    with pytest.raises(SchemaError, match=r"extraction/rgb_width: 1000000000 is greater than the maximum of 16383"):
        open_store(str(store))


def test_extraction_records_a_video_longer_than_readers_take_as_failed(two_video_store, tmp_path, monkeypatch):
    """What readers refuse is never written as complete (MAX_FRAMES lowered to 14 here: the
    store's videos have 13 and 16 frames)."""
    monkeypatch.setattr(layout, "MAX_FRAMES", 14)
    summary = run_extraction(
        load_dataset("folder", two_video_store[0]), str(tmp_path / "s.zarr"), ExtractSettings(), SequentialExecutor()
    )
    assert summary.completed == 1
    assert summary.failures == [(VIDEO, "16 frames, more than the 14 a store's video may have")]


def test_another_tools_rechunking_stays_readable_and_only_chunks_larger_than_the_array_are_refused():
    extraction = {"width": 160, "height": 128, "mv_cell": 16, "rgb_width": 160, "rgb_height": 128}
    frames = 100
    mvs = {"dtype": "int16", "shape": (frames, 2, 8, 10), "frames": frames, "extraction": extraction}
    # comode's own layout, then smaller chunks without shards (as a plain zarr copy might write)
    inner, file = chunk_layout(mvs["shape"], layout.MVS_CHUNK_FRAMES)
    assert array_problem("mvs", chunks=inner, shards=file, **mvs) is None
    assert array_problem("mvs", chunks=(10, 2, 4, 5), shards=None, **mvs) is None
    # larger than the array along an axis, more rows than the layout puts in one, or a
    # shard beyond the array: refused
    assert "larger than its shape" in array_problem("mvs", chunks=(frames, 2, 16, 10), shards=None, **mvs)
    assert "larger than its shape" in array_problem("mvs", chunks=(frames, 2, 8, 10), shards=None, **mvs)
    assert "shards" in array_problem("mvs", chunks=inner, shards=(inner[0] * 1000, 2, 8, 10), **mvs)
