"""Each stored frame's presentation time in the source, written by the re-encode itself.

The re-encode renumbers frames (``setpts=N``, see :mod:`comode.extract.encode`), so the
MPEG-2 streams carry frame numbers, not the source's clock.  To keep the source's timing
(variable-frame-rate phone videos, screen recordings, dropped frames), ffmpeg writes one line
per frame it hands to the MV-stream encoder with its pre-encoding stats
(``-stats_enc_pre``, FFmpeg >= 6.0): the index of the decoded source frame it came from
(``ni``), that frame's pts (``ptsi``) and time base (``tbi``)::

    0 0 1/26777
    1 1037 1/26777

The index doubles as a check of the invariant "every decoded frame becomes one stored frame,
in order": it must read 0, 1, 2, ... with nothing skipped or repeated.

Why ffmpeg's stats and not a library: the source is only ever decoded by the ffmpeg
subprocess (isolation, time limit).  Why these and not ``showinfo``'s log lines, which any
ffmpeg writes: in one interleaved run on the 15 shared clips the stats cost +0.1% of the
re-encode's CPU time and showinfo +1.5% (docs/extraction.md).  An ffmpeg older than 6.0
(``COMODE_FFMPEG``) gets no stats option: the optional ``timestamps`` array is then left out.

Times are those ffmpeg decoded: the source's pts minus the start time ffmpeg gives the file
(so the first frame is at or near 0; a frame the container left without a pts gets ffmpeg's
estimate), kept exactly as integer ticks of the source stream's time base (a float would
round 1/26777 s).  Shape letters: T frames.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

# A frame without a timestamp (FFmpeg's AV_NOPTS_VALUE).  ffmpeg prints INT64_MAX for it.
NO_TIMESTAMP = np.iinfo(np.int64).min
_PRINTED_NO_TIMESTAMP = np.iinfo(np.int64).max
STATS_FORMAT = "{ni} {ptsi} {tbi}"


@dataclass(frozen=True)
class FrameTimes:
    """ticks: (T,) int64 pts of every frame (NO_TIMESTAMP: none); seconds = ticks * time_base."""

    ticks: np.ndarray
    time_base: Fraction

    @property
    def seconds(self) -> np.ndarray:
        """(T,) float64 seconds (NaN: no timestamp)."""
        return np.where(
            self.ticks == NO_TIMESTAMP, np.nan, self.ticks * self.time_base.numerator / self.time_base.denominator
        )


@lru_cache(maxsize=None)
def ffmpeg_writes_frame_stats(ffmpeg: str) -> bool:
    """Whether ``ffmpeg`` has ``-stats_enc_pre_fmt`` (FFmpeg >= 6.0), asked once per process."""
    try:
        help_text = subprocess.run(
            [ffmpeg, "-hide_banner", "-h", "long"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "-stats_enc_pre_fmt" in help_text


def stats_args(stream: int, path: Path) -> list[str]:
    """ffmpeg output options writing output stream ``stream``'s frame times to ``path``."""
    return [f"-stats_enc_pre:v:{stream}", str(path), f"-stats_enc_pre_fmt:v:{stream}", STATS_FORMAT]


def read_frame_times(path: Path) -> FrameTimes:
    """Parse the stats file ffmpeg wrote with ``stats_args``.

    Raises ValueError when the source frame indices are not 0, 1, 2, ... (ffmpeg dropped or
    repeated a decoded frame: the store would break its invariant), when they are unknown,
    or when the time base is missing or changes.
    """
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if any(len(row) != 3 for row in rows):
        raise ValueError(f"frame stats lines are not '{STATS_FORMAT}'")
    index = np.array([int(row[0]) for row in rows], dtype=np.int64)
    if (index < 0).any():
        raise ValueError("ffmpeg did not say which decoded source frame each encoded frame came from")
    if not np.array_equal(index, np.arange(len(rows))):
        wrong = int(np.flatnonzero(index != np.arange(len(rows)))[0])
        raise ValueError(
            f"encoded frame {wrong} came from decoded source frame {index[wrong]}, not {wrong}: "
            "ffmpeg dropped or repeated source frames"
        )
    time_bases = {row[2] for row in rows}
    if len(time_bases) > 1 or time_bases & {"0/1", "0/0"}:
        raise ValueError(f"frame time base missing or changing: {sorted(time_bases)}")
    ticks = np.array([int(row[1]) for row in rows], dtype=np.int64)
    ticks[ticks == _PRINTED_NO_TIMESTAMP] = NO_TIMESTAMP
    return FrameTimes(ticks, Fraction(time_bases.pop()) if time_bases else Fraction(1, 1))
