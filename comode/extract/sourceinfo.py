"""What ffmpeg says about the source video stream it decodes, read from its log.

ffmpeg describes every input stream before it starts; the re-encode's own log (no second
probe of the source, which only ever an isolated ffmpeg process opens) gives the codec, the
size, the nominal frame rate, the display rotation and the stream's index.  Hand-parsed:
these lines are ffmpeg's human-readable output, and no library reads them; the patterns
below hold for FFmpeg 5.1 to 9.0 (tested on logs of both spellings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from comode.extract.frametimes import FrameTimes


@dataclass(frozen=True)
class SourceInfo:
    """What ffmpeg reported about the source video stream it decoded.

    width, height: as displayed, i.e. after the rotation ffmpeg applies (a phone's portrait
    1920x1080 stream with a 90 degree display matrix is 1080 wide, 1920 high).
    rotation: the display matrix's rotation in degrees counter-clockwise, as ffprobe prints
    it, in (-180, 180] (ffmpeg turned the decoded frames by it, so that what we store is
    upright); 0 if none.
    stream: index of the stream in the file (not 0 when audio comes first).
    frame_times: every decoded frame's source timestamp (None until the re-encode ran, and
    with an ffmpeg older than 6.0).
    """

    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    rotation: float = 0.0
    stream: int | None = None
    frame_times: FrameTimes | None = field(default=None, compare=False, repr=False)


# The size comes after ", " ("yuv420p(tv), 640x480 [SAR 1:1]"), never a codec tag ("/ 0x0002)").
_STREAM_LINE = re.compile(
    r"Stream #0:(?P<index>\d+).*?: Video: (?P<codec>[\w-]+)"
    r".*?, (?P<w>[1-9]\d{0,5})x(?P<h>[1-9]\d{0,5})\b"
)
_ANY_STREAM = re.compile(r"Stream #\d+:\d+")
# ffmpeg prints the average rate as "fps" when it knows it, the base rate ("tbr") always.
_FPS = re.compile(r"(?P<rate>\d+(?:\.\d+)?)(?P<k>k?) (?:fps|tbr)\b")
# "Display Matrix: rotation of -90.00 degrees" (FFmpeg 7+) / "displaymatrix: ..." (5.x).
_ROTATION = re.compile(r"display ?matrix: rotation of (?P<degrees>-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
# A rate above this is a container's placeholder, not a frame rate (raw DV reads "60k fps, 25 tbr").
_MAX_FPS = 1000.0


def _nominal_fps(stream_line: str) -> float | None:
    """The stream's average frame rate ("25 fps"), else its base rate ("25 tbr"), if plausible.

    Nominal only: a variable-frame-rate source's real timing is its frame timestamps."""
    rates = {
        ("fps" if "fps" in m.group(0) else "tbr"): float(m["rate"]) * (1000 if m["k"] else 1)
        for m in _FPS.finditer(stream_line)
    }
    return next((rates[kind] for kind in ("fps", "tbr") if 0 < rates.get(kind, 0) <= _MAX_FPS), None)


def parse_source_info(stderr: str) -> SourceInfo:
    """Read the description of the video stream ffmpeg decodes (the first one that is not
    an attached picture, like the ``0:V:0`` we map) from ffmpeg's log, with its display
    rotation, which ffmpeg prints on the stream's side-data lines below it."""
    input_part = stderr.split("Output #0", 1)[0].splitlines()
    for number, line in enumerate(input_part):
        match = _STREAM_LINE.search(line)
        if not match or "(attached pic)" in line:
            continue
        fps = _nominal_fps(line)
        rotation = 0.0
        for below in input_part[number + 1 :]:
            if _ANY_STREAM.search(below):
                break
            turned = _ROTATION.search(below)
            if turned:
                rotation = float(turned["degrees"]) % 360  # one spelling per turn: (-180, 180]
                rotation = rotation - 360 if rotation > 180 else rotation + 0.0  # + 0.0: no -0.0
                break
        width, height = int(match["w"]), int(match["h"])
        if round(rotation) % 180 == 90:  # a quarter turn swaps the displayed sides
            width, height = height, width
        return SourceInfo(
            codec=match["codec"], width=width, height=height, fps=fps, rotation=rotation, stream=int(match["index"])
        )
    return SourceInfo(codec=None, width=None, height=None, fps=None)
