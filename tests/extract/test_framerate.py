"""The source's frame rate in the stored rgb_stream's MPEG-2 headers (was always 25)."""

import shutil
import subprocess
from fractions import Fraction

import av
import pytest

from comode.extract.framerate import MPEG2_FRAME_RATES, nearest_frame_rate_code
from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_arrays
from tests.videos import translating_frames, write_video


@pytest.mark.parametrize("rate", ["30000/1001", "24"])
def test_a_player_reads_the_sources_rate_from_the_stored_stream(tmp_path, rate):
    source = write_video(
        tmp_path / "clip.mkv", translating_frames(frames=26, width=340, height=256, dx=2, dy=0), fps=rate
    )
    _, arrays = extract_arrays(source, ExtractSettings(), workdir=tmp_path)
    m2v = tmp_path / "rgb.m2v"
    m2v.write_bytes(arrays.rgb_stream.tobytes())
    # libavformat, what ffprobe and players use: the header's rate is the stream's r_frame_rate
    # ("tbr").  (Its avg_frame_rate of a raw .m2v is the raw demuxer's -framerate option, 25.)
    with av.open(str(m2v)) as container:
        stream = container.streams.video[0]
        assert stream.base_rate == Fraction(rate)
        assert sum(1 for _ in container.decode(stream)) == 26
    ffprobe = shutil.which("ffprobe")
    if ffprobe is not None:
        out = subprocess.run(
            [ffprobe, "-v", "error", "-show_entries", "stream=r_frame_rate", "-of", "csv=p=0", str(m2v)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert Fraction(out.strip().strip(",")) == Fraction(rate)


@pytest.mark.parametrize(
    ("fps", "rate"),
    [
        (23.976, "24000/1001"),
        (19.62, "24000/1001"),  # nothing slower in MPEG-2: the nearest
        (28.0, "30000/1001"),
        (29.97, "30000/1001"),
        (25.0, "25"),
        (59.94, "60000/1001"),
        (120.0, "60"),
    ],
)
def test_the_nearest_mpeg2_rate_is_chosen(fps, rate):
    assert MPEG2_FRAME_RATES[nearest_frame_rate_code(fps)] == Fraction(rate)
