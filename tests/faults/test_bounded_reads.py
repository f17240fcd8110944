"""A store from elsewhere cannot size a reader's memory (issue 25, "bounded reads").

A real store made by the package's own extraction, with one more video for each way a
hostile source can ask for memory: a copy of one of its videos rewritten, with zarr, so
that its metadata asks for gigabytes (an ``rgb_stream`` whose one chunk is declared 8 GiB,
its file a 256 KiB zstd frame that does decode to 8 GiB; an ``iframe_index`` declared 8 GiB
with no chunk at all, read back as zeros; ``frames=400000000``), or a chunk of the right
size whose compressed bytes do (a zstd frame declaring 8 GiB, an 8 MiB gzip stream of 8 GiB,
a blosc header declaring 2 GiB), or its stream has frames larger than the store's.  Under
4 GiB of address space (the issue's ``ulimit -v 4G``), on each read path (tensorstore, and
zarr-python as in a process forked after its parent read): ``store validate --data`` names
every such video with its reason and exits 1, training skips and counts each, evaluation
records each.  Before, each of them aborted (``std::bad_alloc``) or ran out of memory; on
the zarr-python path the compressed bytes were decompressed to what they declared, and
``validate --data`` called the stream of larger frames valid.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import layout, open_store
from comode.store.bounds import OversizedVideo, array_problem, encoded_limit, file_limit
from comode.store.containment import METADATA_BYTES
from comode.store.index import reindex
from comode.store.schema import SchemaError
from comode.store.validate import validate_store
from comode.store.zarr_files import chunk_layout

VIDEO = "left__video01.mkv"  # the video the hostile ones are copies of; the store's two stay good
GOOD = "right__video00.mkv"
MEMORY_LIMIT = 4 << 30  # RLIMIT_AS of the processes below: the issue's `ulimit -v 4G`
DECLARED = 8 << 30  # what the hostile metadata declares: twice that limit


def _zstd_frame(data: bytes, size: int, *, declared: int | None = None) -> bytes:
    """One zstd frame decoding to ``data`` followed by zeros up to ``size`` bytes: ``data``
    in raw blocks, the zeros in run-length blocks of 128 KiB (4 bytes each, so 8 GiB of them
    take 256 KiB).  Written by hand: compressing 8 GiB would take the test's time and memory.
    Its header declares ``declared`` bytes of content (default: ``size``, the truth)."""
    block = 128 << 10
    frame = bytearray(struct.pack("<I", 0xFD2FB528))  # magic number
    frame += bytes([0b11000000, (17 - 10) << 3])  # 8-byte content size follows; window 2**17
    frame += struct.pack("<Q", size if declared is None else declared)
    blocks = [(0, data[i : i + block]) for i in range(0, len(data), block)]  # type 0: raw
    blocks += [(1, min(block, size - offset)) for offset in range(len(data), size, block)]  # type 1: RLE
    for number, (kind, body) in enumerate(blocks):
        length = len(body) if kind == 0 else body
        last = number == len(blocks) - 1
        frame += (last | kind << 1 | length << 3).to_bytes(3, "little")
        frame += body if kind == 0 else b"\0"
    return bytes(frame)


def _gzip_of_zeros(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes in about size / 1024 bytes: one compressed MiB
    repeated (each ends in a full flush: byte-aligned, and it stands alone).  Its trailer is
    not the data's checksum: a reader that stops at the chunk's size never gets there."""
    mib = 1 << 20
    gzip = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = gzip.compress(bytes(mib)) + gzip.flush(zlib.Z_FULL_FLUSH)
    again = gzip.compress(bytes(mib)) + gzip.flush(zlib.Z_FULL_FLUSH)
    return first + again * (size // mib - 1) + gzip.flush()


def _replace_array(
    group: Path, name: str, *, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, compressor=None
) -> zarr.Array:
    """``group/name`` made anew by zarr with this metadata (zstd-compressed unless told), no chunk written."""
    shutil.rmtree(group / name)
    return zarr.create_array(
        str(group / name),
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        serializer=BytesCodec(),
        compressors=compressor or ZstdCodec(level=1),
        fill_value=0,
        dimension_names=layout.DIMENSION_NAMES[name],
    )


def _stream(group: Path) -> bytes:
    return zarr.open_array(str(group / "rgb_stream"), mode="r")[...].tobytes()


def _stream_chunk(group: Path, data: bytes, *, chunk: int | None = None, compressor=None) -> None:
    """``rgb_stream`` made one chunk of ``chunk`` bytes (default: the stream's length, as
    a store may have it), its file ``data``."""
    length = len(_stream(group))
    _replace_array(
        group, "rgb_stream", shape=(length,), chunks=(chunk or length,), dtype="uint8", compressor=compressor
    )
    path = group / "rgb_stream" / "c" / "0"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)


def _chunk_declared_8_gib(group: Path) -> str:
    """The stream's real bytes in one chunk declared 8 GiB: a 256 KiB file."""
    stream = _stream(group)
    _stream_chunk(group, _zstd_frame(stream, DECLARED), chunk=DECLARED)
    assert (group / "rgb_stream" / "c" / "0").stat().st_size < len(stream) + (300 << 10)
    return f"rgb_stream declares chunks [{DECLARED}], larger than its shape [{len(stream)}] allows"


def _huge_shape_no_chunks(group: Path) -> str:
    """2**31 I-frame numbers (int32: 8 GiB), in one chunk as the layout has it, never written."""
    rows = DECLARED // 4
    _replace_array(group, "iframe_index", shape=(rows,), chunks=(rows,), dtype="int32")
    return f"iframe_index shape ({rows},), expected (K,) with K <= 16, the video's frames"


def _frames_400_million(group: Path) -> str:
    path = group / "zarr.json"
    document = json.loads(path.read_text())
    document["attributes"]["frames"] = 400_000_000
    path.write_text(json.dumps(document))
    return f"frames is 400000000, more than the {layout.MAX_FRAMES} a store's video may have"


def _limit(group: Path) -> int:
    """What the zarr-python path lets one chunk of the stream decode to (bounded_codecs)."""
    return encoded_limit(len(_stream(group)))


def _zstd_frame_declaring_8_gib(group: Path) -> str:
    """A chunk of the stream's size whose zstd frame holds the stream and declares 8 GiB."""
    limit, stream = _limit(group), _stream(group)
    _stream_chunk(group, _zstd_frame(stream, len(stream), declared=DECLARED))
    return f"a zstd chunk declares {DECLARED} bytes of content, more than the {limit} bytes"


def _gzip_of_8_gib(group: Path) -> str:
    """A chunk of the stream's size whose 8 MiB gzip stream holds 8 GiB of zeros (in a local
    store its file is already too large for the chunk: READ_THROUGH_FSSPEC reaches the codec)."""
    limit = _limit(group)
    _stream_chunk(group, _gzip_of_zeros(DECLARED), compressor=GzipCodec(level=1))
    return f"a gzip chunk decodes to more than the {limit} bytes"


def _blosc_header_declaring_2_gib(group: Path) -> str:
    """The stream's real bytes in a blosc chunk whose header says it decodes to 2 GiB."""
    limit, stream, declared = _limit(group), _stream(group), 0x7FFFFFF0  # blosc's largest
    _replace_array(
        group, "rgb_stream", shape=(len(stream),), chunks=(len(stream),), dtype="uint8", compressor=BloscCodec()
    )[...] = list(stream)
    path = group / "rgb_stream" / "c" / "0"
    chunk = bytearray(path.read_bytes())
    struct.pack_into("<I", chunk, 4, declared)  # the header's nbytes
    path.write_bytes(bytes(chunk))
    return f"a blosc chunk's header declares {declared} bytes, more than the {limit} bytes"


def _chunk_file_of_8_gib(group: Path) -> str:
    """The stream's chunk file made 8 GiB long, sparse: 4 KiB more on disk (readers read a
    chunk's file whole)."""
    stream = zarr.open_array(str(group / "rgb_stream"), mode="r")
    limit = file_limit(dtype=stream.dtype, chunks=stream.chunks, shards=stream.shards)
    os.truncate(group / "rgb_stream" / "c" / "0", DECLARED)
    return f"rgb_stream/c/0 is {DECLARED} bytes, more than the {limit} its chunks may take"


def _array_metadata_of_8_gib(group: Path) -> str:
    """The ``mvs`` array's zarr.json made 8 GiB long, sparse (readers read metadata whole)."""
    os.truncate(group / "mvs" / "zarr.json", DECLARED)
    return f"mvs/zarr.json: a metadata file of {DECLARED} bytes, more than the {METADATA_BYTES} comode reads"


# Video id -> how a copy of VIDEO is made hostile (returns the reason readers give).
HOSTILE = {
    "chunk-declared-8GiB": _chunk_declared_8_gib,
    "shape-8GiB-no-chunks": _huge_shape_no_chunks,
    "frames-400000000": _frames_400_million,
    "chunk-file-8GiB": _chunk_file_of_8_gib,
    "zstd-frame-8GiB": _zstd_frame_declaring_8_gib,
    "gzip-8GiB": _gzip_of_8_gib,
    "blosc-header-2GiB": _blosc_header_declaring_2_gib,
    "array-metadata-8GiB": _array_metadata_of_8_gib,
}
# Those whose compressed bytes lie (the reason: zarr-python's compressor refusing them).
CHUNK_BYTES = {"zstd-frame-8GiB", "gzip-8GiB", "blosc-header-2GiB"}
LARGER_FRAMES = "frames-640x480"  # a valid MPEG-2 stream of 640x480 frames in the 170x128 store


def _expected(video: str, reason: str, read_path: str) -> tuple[str, str]:
    """(the start of ``store validate``'s line, of the readers' failure) for ``video``."""
    if video == "gzip-8GiB":  # its 8 MiB file (or object, through fsspec) is refused first, on either path
        return f"videos/{video}: rgb_stream/c/0 is ", f"OversizedVideo: video '{video}': rgb_stream/c/0 is "
    if video in CHUNK_BYTES:
        # tensorstore stops at the chunk's size with an error of its own
        found = "" if read_path == "tensorstore" else f"OversizedVideo: {reason}"
        return f"videos/{video}: rgb_stream data unreadable (a chunk fails its checksum or does not decode: {found}", (
            found or "ValueError: "
        )
    if video == LARGER_FRAMES:
        return f"videos/{video}: rgb_stream does not decode as the store says: ValueError: {reason}", (
            f"ValueError: {reason}"
        )
    if video == "array-metadata-8GiB":  # a file no reader opens (comode.store.containment)
        return f"videos/{video}/{reason}", f"UnsafeStoreEntry: video '{video}' refused: videos/{video}/{reason}"
    return f"videos/{video}: {reason}", f"OversizedVideo: video '{video}': {reason}"


@pytest.fixture(scope="module")
def hostile_store(two_video_store, larger_frames, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(store, reason by video id): two_video_store's store with one hostile copy of VIDEO
    for each case above, and one with LARGER_FRAMES; reindexed, so listings carry them."""
    store = tmp_path_factory.mktemp("hostile") / "store.zarr"
    shutil.copytree(two_video_store[1], store)
    reasons = {}
    for video, make in {**HOSTILE, LARGER_FRAMES: None}.items():
        group = store / "videos" / video
        shutil.copytree(store / "videos" / VIDEO, group)
        if make is None:
            larger_frames(group, VIDEO)
            reasons[video] = "the stored stream decodes to 640x480 frames, larger than the store's RGB size 170x128"
        else:
            reasons[video] = make(group)
    reindex(str(store), scan=open_store(str(store)).scan_groups)
    return store, reasons


# A process whose parent read through tensorstore before it forked (a "fork" DataLoader
# worker's) reads through zarr-python (comode.store.arrays): that state, made without a fork.
READ_PATHS = {"tensorstore": "", "zarr-python": "import comode.store.arrays as arrays; arrays._CONTEXT = (0, None)\n"}
CLI = "from comode.cli import app; app(prog_name='comode')"

# What training and evaluation read, in a process of their own: the samples of every video
# (a video that fails is replaced and counted), then every video's test clips.
READERS = textwrap.dedent("""
    import json, sys
    from comode.data.clips import VideoClips, usable_batches
    from comode.data.dataset import PretrainDataset
    training = PretrainDataset(sys.argv[1])
    for index in range(len(training)):
        try:
            training[index]
        except RuntimeError as error:  # most videos are hostile: each replacement may be too
            assert "videos in a row failed to load" in str(error), error
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


def _validate_and_read(store: Path, read_path: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """``comode store validate --data STORE``, then READERS, each under MEMORY_LIMIT on ``read_path``."""
    prefix = READ_PATHS[read_path]
    validate = _limited(
        [sys.executable, "-c", prefix + CLI, "store", "validate", "--data", "--no-progress", str(store)]
    )
    return validate, _limited([sys.executable, "-c", prefix + READERS, str(store)])


@pytest.mark.parametrize("read_path", READ_PATHS)
def test_every_hostile_video_is_named_in_bounded_memory(hostile_store, read_path):
    store, reasons = hostile_store
    validate, readers = _validate_and_read(store, read_path)

    assert validate.returncode == 1, validate.stdout + validate.stderr[-3000:]
    assert "Traceback" not in validate.stderr, validate.stderr[-3000:]
    found = [line.removeprefix("invalid ") for line in validate.stderr.splitlines() if line.startswith("invalid")]
    assert len(found) == len(reasons), validate.stderr[-3000:]  # one line each; the two good videos pass
    assert readers.returncode == 0, readers.stderr[-3000:]
    outcome = json.loads(readers.stdout.splitlines()[-1])
    assert outcome["skipped"] >= len(reasons)  # each replaced by another video
    for failures in (outcome["training"], outcome["evaluation"]):
        assert sorted(failures) == sorted(reasons), failures
    for video, reason in reasons.items():
        line, failure = _expected(video, reason, read_path)
        assert any(text.startswith(line) for text in found), (line, found)
        assert outcome["training"][video].startswith(failure), outcome["training"][video]
        assert outcome["evaluation"][video].startswith(failure), outcome["evaluation"][video]


# The compressed stream of each video named, read through fsspec (a store opened with
# storage_options: no local file sizes are checked, zarr-python's compressors decode).
READ_THROUGH_FSSPEC = textwrap.dedent("""
    import json, sys
    from comode.store import open_store
    store = open_store("file://" + sys.argv[1], storage_options={"auto_mkdir": False})
    failures = {}
    for video in sys.argv[2:]:
        try:
            store.video(video).read_rgb_stream()
        except Exception as error:
            failures[video] = f"{type(error).__name__}: {error}"
    print(json.dumps(failures))
""")


def test_compressed_bytes_that_lie_are_refused_at_the_chunks_size_through_fsspec(hostile_store):
    store, reasons = hostile_store
    videos = sorted(CHUNK_BYTES)
    read = _limited([sys.executable, "-c", READ_THROUGH_FSSPEC, str(store), GOOD, *videos])
    assert read.returncode == 0, read.stderr[-3000:]
    failures = json.loads(read.stdout)
    assert sorted(failures) == videos  # the good video reads
    for video in videos:  # fsspec reads through zarr-python
        assert failures[video].startswith(_expected(video, reasons[video], "zarr-python")[1]), failures[video]


def test_an_object_larger_than_its_chunks_on_s3_is_named_before_it_is_read(two_video_store, s3_bucket, tmp_path):
    """The remote twin of the sparse 8 GiB chunk file: readers fetch a chunk's object whole,
    so a server holding a larger object than the chunk can take would have the reader take
    that memory.  Here the stream's object is 2 MiB for a ~19 KB chunk (what a test server
    holds easily; the rule is the same for 8 GiB): `store validate --data` names it, from one
    listing of the video's objects, under the memory limit, and the other video passes."""
    local = two_video_store[1]
    url = s3_bucket.upload(local, "oversized.zarr")
    stream = zarr.open_array(str(local / "videos" / VIDEO / "rgb_stream"), mode="r")
    limit = file_limit(dtype=stream.dtype, chunks=stream.chunks, shards=stream.shards)
    size = 2 * 2**20
    s3_bucket.client().put_object(
        Bucket=s3_bucket.name, Key=f"oversized.zarr/videos/{VIDEO}/rgb_stream/c/0", Body=os.urandom(size)
    )
    validate = subprocess.run(
        [sys.executable, "-c", CLI, "store", "validate", "--data", "--no-progress", url],
        capture_output=True,
        text=True,
        timeout=300,
        env=s3_bucket.environment(tmp_path),
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT)),
    )
    assert validate.returncode == 1, validate.stdout + validate.stderr[-3000:]
    assert "Traceback" not in validate.stderr, validate.stderr[-3000:]
    found = [line for line in validate.stderr.splitlines() if line.startswith("invalid")]
    assert found == [
        f"invalid videos/{VIDEO}: rgb_stream/c/0 is {size} bytes, more than the {limit} its chunks may take"
    ], validate.stderr[-3000:]


def test_the_good_store_reads_in_the_same_bounds(two_video_store):
    """The limit and the readers above are not what refuses: the unedited store passes (the
    hostile store's two good videos pass on both read paths too)."""
    validate, readers = _validate_and_read(two_video_store[1], "tensorstore")
    assert validate.returncode == 0, validate.stdout + validate.stderr[-3000:]
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
