"""The re-encode: stream layout (GOP, no B-frames, sizes) and clear reasons for bad input."""

import re
from pathlib import Path

import av
import numpy as np
import pytest

from comode.extract.encode import ExtractionFailure, _failure_reason, reencode, reencode_command
from comode.extract.settings import ExtractSettings
from comode.extract.sourceinfo import parse_source_info
from comode.extract.video import extract_arrays
from tests.commands import run_ffmpeg
from tests.videos import translating_frames, write_video


def test_both_streams_have_gop_12_no_b_frames_and_their_sizes(tmp_path, real_dir):
    nut = tmp_path / "out.nut"
    info = reencode(real_dir / "mmaction2_apply_eye_makeup.avi", nut, ExtractSettings())
    assert (info.codec, info.width, info.height, info.fps) == ("mpeg4", 320, 240, 25.0)
    with av.open(str(nut)) as container:
        sizes = [(s.codec_context.name, s.width, s.height) for s in container.streams.video]
    types = {}
    for frame_stream in (0, 1):  # each stream read from the start (a NUT seek to 0 may land one GOP late)
        with av.open(str(nut)) as container:
            types[frame_stream] = [f.pict_type for f in container.decode(video=frame_stream)]
    assert sizes == [("mpeg2video", 340, 256), ("mpeg2video", 170, 128)]
    for stream_types in types.values():
        letters = "".join({1: "I", 2: "P", 3: "B"}[int(t)] for t in stream_types)
        assert len(letters) == 164  # one output frame per source frame
        assert letters == ("I" + "P" * 11) * 13 + "I" + "P" * 7


def test_each_encoder_option_targets_its_own_stream():
    command = reencode_command(Path("in.mp4"), Path("out.nut"), ExtractSettings(codec="mpeg4", quality=3))
    assert command[command.index("-c:v:0") + 1] == "mpeg4" and command[command.index("-q:v:0") + 1] == "3"
    assert command[command.index("-c:v:1") + 1] == "mpeg2video" and command[command.index("-q:v:1") + 1] == "5"
    assert "-q:v" not in command and "-c:v" not in command  # an unqualified option would hit both streams


def test_crop_mode_keeps_aspect(tmp_path):
    # A 640x240 source (8:3) with a vertical bar in the middle third: stretch squeezes the
    # picture; crop keeps the centre unscaled in x relative to y.
    frames = np.zeros((3, 240, 640, 3), dtype=np.uint8)
    frames[:, :, 300:340] = 255
    video = write_video(tmp_path / "wide.mkv", frames)
    for resize, expected_width in (("stretch", 340 * 40 / 640), ("crop", 40 * 256 / 240)):
        work = tmp_path / resize
        work.mkdir()
        _, arrays = extract_arrays(video, ExtractSettings(resize=resize), workdir=work)
        bright = (arrays.iframes[0].mean(axis=(0, 2)) > 128).sum() * 2  # rgb is half size
        assert abs(bright - expected_width) <= 4, (resize, bright, expected_width)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(50_000)), "not a readable video"),
        (lambda p: None, "file not found"),
    ],
    ids=["zero-bytes", "random-bytes", "missing"],
)
def test_bad_files_fail_with_a_clear_reason(tmp_path, make, reason):
    path = tmp_path / "bad video.mp4"
    make(path)
    with pytest.raises(ExtractionFailure, match=re.escape(reason)):
        reencode(path, tmp_path / "out.nut", ExtractSettings())


def test_audio_only_file_fails_as_no_video_stream(tmp_path):
    audio = tmp_path / "tone.m4a"
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", audio)
    with pytest.raises(ExtractionFailure, match="no video stream"):
        reencode(audio, tmp_path / "out.nut", ExtractSettings())


def test_truncated_file_keeps_the_frames_before_the_cut_or_fails_clearly(tmp_path, real_dir):
    data = (real_dir / "mmaction2_apply_eye_makeup.avi").read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    try:
        _, arrays = extract_arrays(truncated, ExtractSettings(), workdir=tmp_path)
    except ExtractionFailure as failure:
        assert str(failure)  # a reason, not an empty message
    else:
        assert 0 < arrays.num_frames < 164


def test_time_limit_kills_a_hanging_decode(tmp_path, monkeypatch):
    video = write_video(tmp_path / "hangs.mkv", translating_frames(frames=2, width=64, height=48, dx=0, dy=0))
    monkeypatch.setenv("COMODE_FAULT_INJECT", "hang:hangs.mkv")  # the decoder sleeps forever
    with pytest.raises(ExtractionFailure, match="timed out after 1 s"):
        reencode(video, tmp_path / "out.nut", ExtractSettings(timeout_s=1))


def test_a_fifo_or_a_device_is_refused_before_ffmpeg_could_block_on_it(tmp_path):
    import os

    fifo = tmp_path / "never-written.mp4"
    os.mkfifo(fifo)  # opening a FIFO with no writer would block forever
    with pytest.raises(ExtractionFailure, match=re.escape("not a regular file (FIFO)")):
        reencode(fifo, tmp_path / "out.nut", ExtractSettings(timeout_s=1))
    (tmp_path / "zeros.mp4").symlink_to("/dev/zero")  # endless input
    with pytest.raises(ExtractionFailure, match=re.escape("not a regular file (device)")):
        reencode(tmp_path / "zeros.mp4", tmp_path / "out.nut", ExtractSettings(timeout_s=1))


def test_source_info_parsing_handles_missing_fps():
    log = "Input #0, matroska\n  Stream #0:0: Video: ffv1, yuv444p, 340x256, SAR 1:1\nOutput #0, nut"
    info = parse_source_info(log)
    assert (info.codec, info.width, info.height, info.fps) == ("ffv1", 340, 256, None)


_PHONE_LOG = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mov':
  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 69 kb/s (default)
  Stream #0:1[0x2](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, progressive), 1920x1080, 7923 kb/s, \
29.97 fps, 29.97 tbr, 600 tbn (default)
    Metadata:
      handler_name    : Core Media Video
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:2[0x0]: Video: mjpeg (Baseline), yuvj420p(pc), 320x240 [SAR 1:1 DAR 4:3], 90k tbr, 90k tbn (attached pic)
Output #0, nut, to 'out.nut':
  Stream #0:0: Video: mpeg2video, yuv420p, 340x256, q=2-31
"""


def test_source_info_of_a_portrait_phone_video():
    """The video stream after an audio one, its rotation (FFmpeg 7+ spelling), its size as
    displayed (a quarter turn swaps the sides), the codec tag's hex not taken for a size."""
    info = parse_source_info(_PHONE_LOG)
    assert (info.codec, info.stream, info.rotation, info.fps) == ("hevc", 1, -90.0, 29.97)
    assert (info.width, info.height) == (1080, 1920)


def test_source_info_skips_a_cover_picture_and_reads_the_old_rotation_spelling():
    log = (
        "  Stream #0:0: Video: png, rgb24(pc), 64x64 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)\n"
        "  Stream #0:1[0x100]: Video: mpeg2video (Main) ([2][0][0][0] / 0x0002), yuv420p(tv, progressive), "
        "720x576 [SAR 16:15 DAR 4:3], 60k fps, 25 tbr, 90k tbn\n"
        "    Side data:\n      displaymatrix: rotation of -180.00 degrees\n"
    )
    info = parse_source_info(log)
    assert (info.codec, info.stream, info.width, info.height) == ("mpeg2video", 1, 720, 576)
    assert info.rotation == 180.0  # one spelling per turn, in (-180, 180]
    assert info.fps == 25.0  # "60k fps" is a container placeholder: the base rate ("tbr") instead


def test_an_unknown_ffmpeg_failure_is_reported_by_its_cause_not_by_the_wrap_up():
    """The log of issue 14's failure: the reason names the encoder's complaint, not "Conversion failed!"."""
    log = (
        "[mpeg2video @ 0x559c71512680] Invalid pts (58) <= last (58)\n"
        "[vost#0:1/mpeg2video @ 0x559c714ac880] [enc:mpeg2video @ 0x559c71512540] Error submitting video frame "
        "to the encoder\n"
        "[vost#0:1/mpeg2video @ 0x559c714ac880] Task finished with error code: -22 (Invalid argument)\n"
        "[out#0/nut @ 0x559c7149a980] video:268KiB audio:0KiB\nConversion failed!\n"
    )
    assert _failure_reason(log, 234) == "ffmpeg exited with code 234: [mpeg2video] Invalid pts (58) <= last (58)"
    assert _failure_reason("something odd\nConversion failed!\n", 1) == "ffmpeg exited with code 1: Conversion failed!"


def test_synthetic_video_round_trip_has_one_frame_per_source_frame(tmp_path):
    video = write_video(tmp_path / "one.mkv", translating_frames(frames=1, width=64, height=48, dx=0, dy=0))
    _, arrays = extract_arrays(video, ExtractSettings(), workdir=tmp_path)
    assert arrays.num_frames == 1 and bytes(arrays.frame_types) == b"I" and not arrays.mvs.any()
