"""Motion vectors: bit-exact against the answer key, sign and units on synthetic motion,
and identical from both readers (PyAV export and mv-extractor) on every frame of the
re-encoded real clips."""

from pathlib import Path

import numpy as np
import pytest

from comode.extract.decode import frames_held_back, read_motion_vectors, read_streams
from comode.extract.encode import reencode
from comode.extract.mvgrid import RECORD_FIELDS, records_to_grid
from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_arrays
from tests.commands import run_ffmpeg
from tests.videos import translating_frames, write_video


def _as_table(records: np.ndarray) -> np.ndarray:
    """(n,) structured records -> (n, 10) int32 in the answer key's column order."""
    return np.stack([records[name].astype(np.int32) for name in RECORD_FIELDS], axis=1).reshape(-1, len(RECORD_FIELDS))


@pytest.mark.parametrize("backend", ["pyav", "mvextractor"])
def test_answer_key_frames_0_to_35_bit_exact(mv_reference_dir, backend):
    key = np.load(mv_reference_dir / "mvs_frames_000_035.npz")
    expected_types = (mv_reference_dir / "frame_types.txt").read_text().split()
    frames = read_motion_vectors(mv_reference_dir / "vid_mpeg4_part2.mp4", backend=backend)
    assert "".join(t for t, _ in frames) == "".join(expected_types)  # all 337 frame types
    for i in range(36):
        expected = key[f"frame_{i:03d}"]
        got = _as_table(frames[i][1])
        assert got.shape == expected.shape, f"frame {i}: {got.shape} vs {expected.shape}"
        assert np.array_equal(got, expected), f"frame {i} differs from the answer key"
    assert sum(len(r) for _, r in frames[:36]) > 10_000  # the key is not trivially empty


def _extract(tmp_path: Path, frames: np.ndarray, **settings):
    video = write_video(tmp_path / "synthetic video.mkv", frames)
    _, arrays = extract_arrays(video, ExtractSettings(**settings), workdir=tmp_path)
    return arrays


@pytest.mark.parametrize("flip", [False, True], ids=["as-is", "hflip"])
def test_texture_moving_right_2px_down_1px(tmp_path, flip):
    frames = translating_frames(frames=30, width=340, height=256, dx=2, dy=1)
    if flip:
        frames = frames[:, :, ::-1]  # mirrored video: the texture moves left
    arrays = _extract(tmp_path, frames)
    p_frames = arrays.frame_types == ord("P")
    assert p_frames.sum() == 30 - 3  # GOP 12: I at 0, 12, 24
    interior = arrays.mvs[p_frames][:, :, 1:-1, 1:-1]  # border blocks see new content
    expected_x = -8 if flip else 8  # 2 px in quarter pixels, negated by the flip
    exact = (interior[:, 0] == expected_x) & (interior[:, 1] == 4)
    assert np.median(interior[:, 0]) == expected_x and np.median(interior[:, 1]) == 4
    assert exact.mean() > 0.9, f"only {exact.mean():.0%} of interior blocks carry ({expected_x}, 4)"


def test_mpeg4_part2_stream_gives_the_same_units(tmp_path):
    frames = translating_frames(frames=14, width=340, height=256, dx=-3, dy=2, seed=1)
    arrays = _extract(tmp_path, frames, codec="mpeg4")
    interior = arrays.mvs[arrays.frame_types == ord("P")][:, :, 1:-1, 1:-1]
    assert np.median(interior[:, 0]) == -12 and np.median(interior[:, 1]) == 8


def _real_clips(real_dir: Path) -> list[Path]:
    names = [line.split("\t", 1)[0] for line in (real_dir / "MANIFEST.tsv").read_text().splitlines()[1:] if line]
    return [real_dir / name for name in names]


def test_both_readers_give_identical_grids_on_every_frame_of_every_real_clip(tmp_path, real_dir):
    """Issue 18: the mv-extractor backend stored zeros on the last frame.  Whole videos, all
    frames, the 15 shared clips: both backends read the same re-encoded stream and must give
    the same frame types, the same raw vectors and the same grids, the last frame included."""
    settings = ExtractSettings()
    checked_last = 0
    for clip in _real_clips(real_dir):
        nut = tmp_path / f"{clip.stem}.nut"
        reencode(clip, nut, settings)
        grids = {}
        for backend in ("pyav", "mvextractor"):
            streams = read_streams(
                nut, codec=settings.codec, rgb_size=(settings.rgb_width, settings.rgb_height), mv_backend=backend
            )
            grids[backend] = (
                streams,
                records_to_grid(
                    streams.records,
                    streams.frame_of_record,
                    num_frames=len(streams.frame_types),
                    grid_shape=settings.grid_shape,
                    cell=settings.mv_cell,
                ),
            )
        (a, grid_a), (b, grid_b) = grids["pyav"], grids["mvextractor"]
        assert np.array_equal(a.frame_types, b.frame_types), clip.name
        np.testing.assert_array_equal(_as_table(a.records), _as_table(b.records), err_msg=clip.name)
        np.testing.assert_array_equal(a.frame_of_record, b.frame_of_record, err_msg=clip.name)
        np.testing.assert_array_equal(grid_a, grid_b, err_msg=clip.name)
        assert np.count_nonzero(grid_a) > 0.01 * grid_a.size, clip.name  # real motion, not all-zero grids
        if a.frame_types[-1] == ord("P"):
            assert np.count_nonzero(grid_b[-1]) > 0, f"{clip.name}: no vectors on the last P-frame"
            checked_last += 1
    assert checked_last >= 10  # most clips end on a P-frame: the case of the issue


def test_mvextractor_refuses_a_stream_whose_decoder_holds_the_last_frame_back(tmp_path, real_dir):
    """A plain MPEG-2 stream (not marked low-delay, as extraction wrote them before issue 18):
    mv-extractor would hand out its last frame without vectors.  It is refused, loudly."""
    stream = tmp_path / "default_delay.m2v"
    clip = real_dir / "mmaction2_arm_wrestling.mp4"
    mpeg2_gop12 = ["-c:v", "mpeg2video", "-bf", "0", "-g", "12"]
    run_ffmpeg("-i", clip, "-frames:v", "30", *mpeg2_gop12, stream)
    assert frames_held_back(str(stream)) == 1
    with pytest.raises(ValueError, match="would lose the motion vectors of the last 1 frame"):
        read_motion_vectors(stream, backend="mvextractor")
    # The same frames from a stream marked low-delay: nothing held back, the last frame has vectors.
    marked = tmp_path / "low_delay.m2v"
    run_ffmpeg("-i", stream, *mpeg2_gop12, "-flags", "+low_delay", marked)
    assert frames_held_back(str(marked)) == 0
    frames = read_motion_vectors(marked, backend="mvextractor")
    assert len(frames) == 30 and frames[-1][0] == "P" and len(frames[-1][1]) > 0


def test_the_last_frame_keeps_its_motion(tmp_path):
    frames = translating_frames(frames=15, width=340, height=256, dx=2, dy=1, seed=3)
    for codec in ("mpeg2video", "mpeg4"):
        (tmp_path / codec).mkdir()
        arrays = _extract(tmp_path / codec, frames, codec=codec)
        last = arrays.mvs[-1][:, 1:-1, 1:-1]
        assert arrays.frame_types[-1] == ord("P")
        assert np.median(last[0]) == 8 and np.median(last[1]) == 4, codec


@pytest.mark.parametrize("low_delay", [True, False], ids=["low-delay", "default-delay"])
@pytest.mark.parametrize("codec", ["mpeg2video", "mpeg4"])
def test_fast_reading_equals_a_full_decode(tmp_path, real_dir, codec, low_delay):
    """skip_idct + lowres and our raw side-data view give exactly what a plain full decode
    with PyAV's own to_ndarray gives, frame for frame (a real clip, re-encoded), with the
    decoder delay extraction uses (low_delay) and the default one."""
    import av

    from comode.extract.decode import MotionVectorReader, _frame_type
    from comode.extract.encode import reencode

    nut = tmp_path / "x.nut"
    reencode(real_dir / "mmaction2_arm_wrestling.mp4", nut, ExtractSettings(codec=codec))
    with av.open(str(nut)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs", **({"flags": "low_delay"} if low_delay else {})}
        full_types, full = [], []
        for frame in container.decode(stream):
            side = frame.side_data.get("MOTION_VECTORS")
            full_types.append(_frame_type(frame))
            full.append(side.to_ndarray() if side is not None else None)
    with av.open(str(nut)) as container:
        stream = container.streams.video[0]
        reader = MotionVectorReader(codec, stream.codec_context.extradata, low_delay=low_delay)
        for packet in container.demux(stream):
            if packet.size:
                reader.decode(packet)
    types, records, owner = reader.result()
    assert types.tolist() == full_types and len(types) == 280
    # Our MPEG-2 stream is marked low-delay in its own header (issue 18), so even a decoder
    # without the low_delay flag hands out the last frame in time, with its vectors.
    assert full[-1] is not None
    for i, expected in enumerate(full):
        got = records[owner == i]
        if expected is None:
            assert len(got) == 0
            continue
        assert len(got) == len(expected) > 0, f"frame {i}"
        for name in RECORD_FIELDS:
            assert np.array_equal(got[name], expected[name]), f"frame {i}, {name}"
