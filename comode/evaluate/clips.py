"""Which frames a video's test clips use: the uniform sliding window, pure index arithmetic.

The evaluation protocol of the paper (and of VCOP / CoCLR) represents a video by
``clips`` = 10 clips taken with a uniform sliding window over the whole video; each clip
has the pretraining layout (:class:`comode.train.sampling.ClipSpec`: 16 frames, stride 4,
so one clip spans 61 frames).

Long videos (T >= span = 61 by default): the 10 clip starts are evenly spaced from the
first possible start to the last one, ``round(linspace(0, T - span, 10))`` (``np.rint``,
halves to even), so the first clip starts at frame 0 and the last clip ends on frame
T - 1.  Clip c is ``start_c + 4 * [0..15]``.  Example, T = 100: starts 0, 4, 9, 13, 17,
22, 26, 30, 35, 39.  When T - span < 9, some consecutive starts coincide (T = 61: all
ten clips are 0, 4, ..., 60).

Short videos (T < span): no frame is invented and no video is dropped: every clip starts
at 0, keeps the stride, and frame numbers past the end are clamped to T - 1 (the last
frame repeats).  Example, T = 30: every clip is 0, 4, ..., 28, 29, 29, ..., 29 (8 real
frames then 8 copies of frame 29).  T = 1: every clip is sixteen copies of frame 0.  All
ten clips are then identical, so the video's feature equals its single clip's feature.

Shape alphabet: T frames of the video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comode.train.sampling import ClipSpec

__all__ = ["WindowSpec", "sliding_window_indices"]

_PRETRAIN = ClipSpec()


@dataclass(frozen=True)
class WindowSpec:
    """The test-time clip layout (defaults: the paper's protocol, the pretraining clip)."""

    # Clips per video, spread uniformly over it (paper / VCOP / CoCLR: 10).
    clips: int = 10
    # Frames per clip and their stride: the pretraining clip (16 x 4), so the network sees
    # the same temporal scale it was trained on.
    frames: int = _PRETRAIN.frames
    stride: int = _PRETRAIN.stride

    def __post_init__(self) -> None:
        for name in ("clips", "frames", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"WindowSpec.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last frame, inclusive (61 by default)."""
        return (self.frames - 1) * self.stride + 1


def sliding_window_indices(num_frames: int, spec: WindowSpec = WindowSpec()) -> np.ndarray:
    """(clips, frames) int64 frame numbers of a video's test clips, all in [0, T).

    See the module docstring for the rule (even starts for long videos, clamping to the
    last frame for videos shorter than one clip).

    Raises:
        ValueError: T < 1 (a complete video in a store always has frames).
    """
    total = int(num_frames)
    if total < 1:
        raise ValueError(f"a video needs at least 1 frame, got {total}")
    last_start = max(0, total - spec.span)
    starts = np.rint(np.linspace(0, last_start, spec.clips)).astype(np.int64)
    offsets = np.arange(spec.frames, dtype=np.int64) * spec.stride
    return np.minimum(starts[:, None] + offsets[None, :], total - 1)
