"""Frame timestamps written by the re-encode (comode.extract.frametimes)."""

from fractions import Fraction

import numpy as np
import pytest

from comode.extract.encode import ffmpeg_exe, frame_times_path, reencode
from comode.extract.frametimes import NO_TIMESTAMP, ffmpeg_writes_frame_stats, read_frame_times
from comode.extract.settings import ExtractSettings
from tests.videos import translating_frames, write_video


def test_ticks_in_order_with_their_time_base_repeats_and_backward_steps_kept(tmp_path):
    stats = tmp_path / "x.frametimes"
    stats.write_text("0 0 1/26777\n1 1037 1/26777\n2 1037 1/26777\n3 -40 1/26777\n4 9223372036854775807 1/26777\n")
    times = read_frame_times(stats)
    assert times.time_base == Fraction(1, 26777)
    np.testing.assert_array_equal(times.ticks, [0, 1037, 1037, -40, NO_TIMESTAMP])
    assert times.ticks.dtype == np.int64
    np.testing.assert_allclose(times.seconds[:4], [0, 1037 / 26777, 1037 / 26777, -40 / 26777])
    assert np.isnan(times.seconds[4])


@pytest.mark.parametrize(
    "lines, message",
    [
        ("0 0 1/25\n2 2 1/25\n", "encoded frame 1 came from decoded source frame 2, not 1: ffmpeg dropped"),
        ("0 0 1/25\n0 0 1/25\n", "encoded frame 1 came from decoded source frame 0"),
        ("-1 0 1/25\n", "did not say which decoded source frame"),
        ("0 0 1/25\n1 1 1/90000\n", "time base missing or changing"),
        ("0 0 0/1\n", "time base missing or changing"),
        ("0 0\n", "lines are not"),
    ],
)
def test_stats_that_break_the_one_frame_per_source_frame_rule_are_refused(tmp_path, lines, message):
    stats = tmp_path / "x.frametimes"
    stats.write_text(lines)
    with pytest.raises(ValueError, match=message):
        read_frame_times(stats)


def test_the_pinned_ffmpeg_writes_them_for_every_frame(tmp_path):
    """25 fps in Matroska (milliseconds): frame t at 40 t ms; the stats file is left beside the output."""
    assert ffmpeg_writes_frame_stats(ffmpeg_exe())
    video = write_video(tmp_path / "v.mkv", translating_frames(frames=15, width=64, height=48, dx=1, dy=0))
    info = reencode(video, tmp_path / "out.nut", ExtractSettings())
    assert frame_times_path(tmp_path / "out.nut").exists()
    assert info.frame_times.time_base == Fraction(1, 1000)
    np.testing.assert_array_equal(info.frame_times.ticks, np.arange(15) * 40)


def test_an_ffmpeg_without_encoder_stats_is_detected(tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'ffmpeg 5.1 help without the option'\n")
    fake.chmod(0o755)
    assert not ffmpeg_writes_frame_stats(str(fake))
    assert not ffmpeg_writes_frame_stats(str(tmp_path / "missing"))
