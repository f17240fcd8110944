"""The format matrix (issue 14): every variant made in conftest.py goes through the real
command line in one run, which must exit 0, and every video must come out complete with one
stored frame per decoded source frame, in the decoder's order, upright, with its source
timestamps.  What each variant is and why: conftest.VARIANTS.
"""

from __future__ import annotations

import subprocess

import av
import numpy as np
import pytest
import zarr

from comode.extract.datasets import safe_video_id
from comode.extract.frametimes import NO_TIMESTAMP
from comode.store import open_store
from comode.store.validate import validate_store
from tests.commands import comode_command, extract_folder_args


@pytest.fixture(scope="module")
def matrix(variant_folder):
    """(folder, store URL, CLI result): the whole matrix extracted by `comode extract`."""
    root, variants = variant_folder()
    store = root / "matrix.zarr"
    result = subprocess.run(
        comode_command(*extract_folder_args(root, store, "--workers", "0")), capture_output=True, text=True, timeout=900
    )
    return root, str(store), result


def test_the_run_exits_0_and_the_store_is_valid(matrix):
    root, store, result = matrix
    assert result.returncode == 0, result.stderr[-3000:]
    count = len(list((root / "formats").iterdir()))
    assert count >= 40 and f"{count} extracted now" in result.stderr, result.stderr[-3000:]
    report = validate_store(store, read_data=True)
    assert report.ok, report.problems


def _group(store: str, name: str) -> zarr.Group:
    return zarr.open_group(store, mode="r")[f"videos/{safe_video_id(f'formats/{name}')}"]


def test_one_stored_frame_per_decoded_source_frame(matrix, variant, frame_counters):
    root, store, _ = matrix
    source = root / "formats" / variant.name
    group = _group(store, variant.name)
    attrs = group.attrs.asdict()
    assert attrs["status"] == "complete", attrs.get("error")
    expected = frame_counters.pyav(source)
    probed = frame_counters.ffprobe(source)
    assert probed in (None, expected), f"ffprobe -count_frames says {probed}, PyAV decodes {expected}"
    assert attrs["frames"] == attrs["source_frames"] == expected
    assert group["frame_types"].shape == (expected,) and group["mvs"].shape[0] == expected
    # Source timing: one timestamp per frame, in ticks of the recorded time base (or the
    # marker of none: raw streams, AVI and MPEG-PS B-frames carry no pts).
    num, den = attrs["time_base"]
    ticks = group["timestamps"][:]
    assert ticks.shape == (expected,)
    stamped = ticks[ticks != NO_TIMESTAMP]
    assert stamped.size == 0 or abs(stamped[0] * num / den) < 1.0  # ffmpeg starts the file near 0
    assert attrs["source_rotation"] == variant.rotation


def _source_frames(path, size=(170, 128)) -> tuple[np.ndarray, np.ndarray]:
    """((T, 128, 170, 3) RGB frames as decoded, not rotated; (T,) pts in seconds) of 0:V:0."""
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base))
    return frames, np.array(times)


def _resized(image: np.ndarray, size=(170, 128)) -> np.ndarray:
    return np.asarray(
        av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        .reformat(width=size[0], height=size[1])
        .to_ndarray(format="rgb24"),
        dtype=np.float32,
    )


@pytest.mark.parametrize(
    "name, same_pts",
    [
        ("phone_h264_vfr_tb26777_audio_first.mp4", True),
        ("ffv1_repeated_timestamps.mkv", True),
        ("h264_bframes_editlist.mp4", True),
        ("vp8_altref.webm", True),
        ("h264_size_change.ts", False),  # ffmpeg corrects the TS timestamps' jump back at the splice
    ],
)
def test_frames_in_decoder_order_with_their_source_timestamps(matrix, name, same_pts):
    """Stored frame t is source frame t (it is nearer to it than to any other source frame),
    and its timestamp is the source frame's pts (within one tick, on ffmpeg's timeline, which
    starts at the stream's start): irregular, repeated and B-frame-reordered timestamps alike;
    after a mid-stream size change too."""
    root, store, _ = matrix
    video = open_store(store).video(safe_video_id(f"formats/{name}"))
    source, source_times = _source_frames(root / "formats" / name)
    stored = video.decode_frames(range(video.num_frames)).astype(np.float32)
    resized = np.stack([_resized(f) for f in source])
    distance = ((stored[:, None] - resized[None]) ** 2).mean(axis=(2, 3, 4))  # (T stored, T source)
    np.testing.assert_array_equal(distance.argmin(axis=1), np.arange(len(source)))
    if not same_pts:
        return
    num, den = video.attrs["time_base"]
    ticks = video.group["timestamps"][:]
    np.testing.assert_allclose(ticks - ticks[0], (source_times - source_times[0]) * den / num, atol=1.0)


def test_rotated_sources_are_stored_upright(matrix, rotated_variant):
    """ffmpeg applies the display matrix: the stored frames are the decoded frames turned by
    ``source_rotation`` degrees counter-clockwise; the recorded source size is the upright one."""
    root, store, _ = matrix
    group = _group(store, rotated_variant.name)
    attrs = group.attrs.asdict()
    frames, _ = _source_frames(root / "formats" / rotated_variant.name)
    coded_h, coded_w = frames[0].shape[:2]
    quarter_turns = round(attrs["source_rotation"] / 90) % 4
    upright = (coded_w, coded_h) if quarter_turns % 2 == 0 else (coded_h, coded_w)
    assert (attrs["source_width"], attrs["source_height"]) == upright
    stored = group["iframes"][0].astype(np.float32)
    errors = {k: np.abs(_resized(np.rot90(frames[0], k)) - stored).mean() for k in range(4)}
    assert min(errors, key=errors.get) == quarter_turns, errors
    assert errors[quarter_turns] < 0.5 * min(e for k, e in errors.items() if k != quarter_turns), errors
