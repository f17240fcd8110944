"""Which frames a clip uses: every policy of comode in one place, pure index arithmetic.

* **pretraining** (:func:`sample_indices`): one sample = a clip, an I-frame near it, the
  motion-vector window after it and hard-negative windows of the same video;
* **test clips** (:func:`sliding_window_indices`): the paper's 10 clips on a uniform
  sliding window over the whole video (retrieval, linear probe, finetuning's test);
* **finetuning's training clip** (:class:`RandomClipIndices`): one clip per video and
  epoch at a uniform random start.

Nothing here reads a store: a policy maps (number of frames, I-frame positions, a seed)
to frame numbers, so it is testable without video and identical in every process.

Pretraining: one sample of a video with T frames and I-frames at ``iframe_index`` (K,) is::

    clip        16 frames, stride 4            what the V-Network sees
    I-frame     one I-frame near the clip      context key (paper Sec. 3.2)
    future      8 consecutive MV frames,       motion target (paper Sec. 3.3)
                starting 2 frames after the clip's last frame
    negatives   3 other 8-frame MV windows of  hard negatives of the motion loss
                the same video, not overlapping the future window

    frame:  s        s+4   ...   s+60  s+61 s+62 ... s+69
            clip[0]  clip[1]     clip[15]     future[0] .. future[7]

Why MV windows are consecutive frames (stride 1) while the clip has stride 4: ``mvs[t]``
is the motion from frame t-1 to frame t, so the 8 maps of frames f..f+7 are the motion
over the whole span f-1 -> f+7 with nothing missed (summing them gives the displacement
over the window).  Taking every 4th MV map would sample 1/4 of the motion and miss the
rest; the clip can skip frames because the V-Network infers motion from appearance.

Everything random comes from the ``np.random.Generator`` passed in, in a fixed order, so
a sample is a pure function of (num_frames, iframe_index, spec, generator state).

Test clips: ``clips`` = 10 clips taken with a uniform sliding window over the whole video,
each with the pretraining layout (16 frames, stride 4, so one clip spans 61 frames).
Long videos (T >= span): the 10 clip starts are evenly spaced from the first possible
start to the last one, ``round(linspace(0, T - span, 10))`` (``np.rint``, halves to even),
so the first clip starts at frame 0 and the last clip ends on frame T - 1.  Example,
T = 100: starts 0, 4, 9, 13, 17, 22, 26, 30, 35, 39.  When T - span < 9, some consecutive
starts coincide (T = 61: all ten clips are 0, 4, ..., 60).  Short videos (T < span): no
frame is invented and no video is dropped: every clip starts at 0, keeps the stride, and
frame numbers past the end are clamped to T - 1 (the last frame repeats).  Example,
T = 30: every clip is 0, 4, ..., 28, 29, 29, ..., 29.  All ten clips are then identical.

Shape alphabet: T frames of the video, K I-frames, N negative windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comode.data.config import TEST_CLIPS

__all__ = [
    "ClipSpec",
    "MOTION_WINDOWS",
    "SampleIndices",
    "sample_indices",
    "window_distance",
    "pick_distinct_negatives",
    "WindowSpec",
    "sliding_window_indices",
    "RandomClipIndices",
]

MOTION_WINDOWS = ("future", "current")


def _clip_offsets(frames: int, stride: int) -> np.ndarray:
    """(frames,) int64 offsets of a clip's frames from its first: 0, stride, 2 * stride, ..."""
    return np.arange(frames, dtype=np.int64) * stride


def _clip_span(frames: int, stride: int) -> int:
    """Frames from a clip's first to its last frame, inclusive."""
    return (frames - 1) * stride + 1


@dataclass(frozen=True)
class ClipSpec:
    """What one sample is made of (defaults: the paper and the authors' code)."""

    # Frames of the RGB clip fed to the V-Network (paper Sec. 4.1: 16-frame clips).
    frames: int = 16
    # Temporal stride of the clip: 16 x 4 spans 61 frames, ~2.4 s at 25 fps (authors' code).
    stride: int = 4
    # Length of every motion-vector window (future and negatives), consecutive frames
    # (authors' code: 8).  See the module docstring for why the stride is 1.
    mv_window: int = 8
    # The future window starts this many frames after the clip's last frame L: its frames
    # are L + future_gap .. L + future_gap + mv_window - 1 (authors' code: 2).  With gap 2
    # the first target map is the motion L+1 -> L+2: the motion right at the clip's end
    # (L -> L+1) is left out, so the task is prediction, not read-off of the last frames.
    future_gap: int = 2
    # Hard negatives: other MV windows of the SAME video, drawn from the parts that do not
    # overlap the future window (authors' code: 3).  They may overlap the clip and each
    # other's neighbourhood; never the future window, unless the video is too short (see
    # :func:`sample_indices`).
    negatives: int = 3
    # The I-frame is drawn uniformly from the I-frames "within +-5 frames of the clip":
    # frame numbers in [clip[0] - 5, clip[-1] + 5] (inclusive), i.e. inside the clip's span
    # widened by 5 frames on each side (authors' code: 5).  If there is none (only
    # possible with a GOP longer than the window), the I-frame nearest to that interval
    # (ties: the earlier one).
    iframe_radius: int = 5
    # Where the motion target window lies (paper Table 4's "future vs current" ablation):
    # "future" = after the clip (``future_gap``, the method); "current" = the ``mv_window``
    # frames in the middle of the clip's own span, i.e. the motion the clip shows.
    motion_window: str = "future"

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be >= {low}, got {getattr(self, name)}"
            for name, low in (
                ("frames", 1),
                ("stride", 1),
                ("mv_window", 1),
                ("future_gap", 1),
                ("negatives", 0),
                ("iframe_radius", 0),
            )
            if getattr(self, name) < low
        ]
        if self.motion_window not in MOTION_WINDOWS:
            problems.append(f"motion_window must be one of {list(MOTION_WINDOWS)}, got {self.motion_window!r}")
        if problems:
            raise ValueError("invalid ClipSpec: " + "; ".join(problems))

    @property
    def clip_span(self) -> int:
        """Frames from the clip's first to its last frame, inclusive: 61 by default."""
        return _clip_span(self.frames, self.stride)

    @property
    def required_frames(self) -> int:
        """Shortest video that gives a sample without clamping: 70 by default (61 for
        ``motion_window="current"``: the window lies inside the clip's span)."""
        if self.motion_window == "current":
            return max(self.clip_span, self.mv_window)
        return self.clip_span - 1 + self.future_gap + self.mv_window

    @property
    def current_offset(self) -> int:
        """First frame of a "current" window relative to the clip's first frame: the window
        is centred in the clip span (frames 26..33 of 0..60 by default)."""
        return max(0, (self.clip_span - self.mv_window) // 2)


@dataclass(frozen=True, eq=False)
class SampleIndices:
    """Frame numbers of one sample (all int64, all in [0, T)).

    Attributes:
        clip: (frames,) clip frames, non-decreasing (stride ``spec.stride`` unless clamped).
        iframe: position k of the chosen I-frame in ``iframe_index``.
        iframe_frame: its frame number, ``iframe_index[k]``.
        future: (mv_window,) frames whose MV maps are the motion target (after the clip;
            inside it with ``spec.motion_window == "current"``).
        negatives: (negatives, mv_window) frames of the hard-negative MV windows.
        clamped: the video is shorter than ``spec.required_frames``, so some clip or
            window frames repeat (see :func:`sample_indices`).
        negatives_overlap: some negative window shares frames with the future window
            (only when the video is too short to avoid it; count these).
    """

    clip: np.ndarray
    iframe: int
    iframe_frame: int
    future: np.ndarray
    negatives: np.ndarray
    clamped: bool
    negatives_overlap: bool

    @property
    def mv_frames(self) -> np.ndarray:
        """(1 + negatives, mv_window): the future window first, then the negatives."""
        return np.concatenate([self.future[None], self.negatives])


def sample_indices(
    num_frames: int,
    iframe_index: np.ndarray,
    *,
    spec: ClipSpec = ClipSpec(),
    rng: np.random.Generator,
    spare_negatives: int = 0,
) -> SampleIndices:
    """Draw the frames of one sample of a video with ``num_frames`` frames.

    Long videos (T >= ``spec.required_frames``, 70 by default): the clip start s is uniform
    in [0, T - 70]; clip = s + 4 * [0..15]; future = s + 62 + [0..7]; no index repeats.

    Short videos (1 <= T < 70): every video yields a sample, degrading gracefully:
    the future window is placed as late as possible, at max(0, T - 8), so it stays 8 real
    consecutive frames whenever T >= 8; the clip starts at 0 with its stride and its frames
    are clamped to at most (future start - gap), so the clip still ends before the
    future window (its last frames repeat).  Any remaining index >= T is clamped to T - 1
    (T < 8: the window repeats the last frame).  ``clamped`` is True.  Example, T = 40:
    clip 0, 4, ..., 28, 30, 30, ..., 30; future 32..39.  T = 1: everything is frame 0.

    Negatives: starts drawn uniformly without replacement among the window starts
    [0, T - 8] whose window does not overlap the future window (with replacement when
    fewer than ``spec.negatives`` exist).  Long videos always have such starts (the
    future window starts at frame 62 or later, so windows starting in [0, 54] are free).
    If none exist (T < 2 x 8 = 16: two windows do not fit side by side), they are drawn among the starts other than the future's (partially
    overlapping windows), or the future's own start when that is the only one (T <= 8);
    ``negatives_overlap`` is then True: such a sample has a negative that (partly)
    equals its positive, and callers should count how often that happens.

    Args:
        num_frames: T >= 1.
        iframe_index: (K,) ascending frame numbers of the I-frames, K >= 1.
        spec: the sample layout.
        rng: the only source of randomness (draw order is fixed: clip start, I-frame,
            negatives).
        spare_negatives: draw this many negative windows more than ``spec.negatives`` (in
            the same draw), so that a caller can replace near-copies of the positive
            (:func:`pick_distinct_negatives`); 0 keeps the draws of earlier versions.

    Raises:
        ValueError: T < 1 or no I-frames.
    """
    total = int(num_frames)
    if total < 1:
        raise ValueError(f"a video needs at least 1 frame, got {total}")
    iframes = np.asarray(iframe_index, dtype=np.int64)
    if iframes.ndim != 1 or iframes.size == 0:
        raise ValueError("iframe_index must be a non-empty 1-D array")

    steps = _clip_offsets(spec.frames, spec.stride)
    window = np.arange(spec.mv_window, dtype=np.int64)
    last_frame = total - 1
    clamped = total < spec.required_frames
    if spec.motion_window == "current":
        # The target is the motion inside the clip: centred in its span (clamped like the
        # clip when the video is short).
        start = int(rng.integers(0, total - spec.required_frames + 1)) if not clamped else 0
        clip = start + steps
        future_start = min(start + spec.current_offset, max(0, total - spec.mv_window))
    elif not clamped:
        start = int(rng.integers(0, total - spec.required_frames + 1))
        clip = start + steps
        future_start = int(clip[-1]) + spec.future_gap
    else:
        future_start = max(0, total - spec.mv_window)
        clip = np.minimum(steps, max(0, future_start - spec.future_gap))
    clip = np.minimum(clip, last_frame)
    future = np.minimum(future_start + window, last_frame)

    k = _draw_iframe(iframes, int(clip[0]), int(clip[-1]), spec.iframe_radius, rng)
    negatives, overlap = _draw_negatives(total, future_start, spec, rng, count=spec.negatives + spare_negatives)
    return SampleIndices(
        clip=clip,
        iframe=k,
        iframe_frame=int(iframes[k]),
        future=future,
        negatives=np.minimum(negatives[:, None] + window, last_frame),
        clamped=clamped,
        negatives_overlap=overlap,
    )


def _draw_iframe(iframes: np.ndarray, first: int, last: int, radius: int, rng: np.random.Generator) -> int:
    """Position in ``iframes`` of an I-frame in [first - radius, last + radius], else the nearest."""
    low, high = first - radius, last + radius
    candidates = np.flatnonzero((iframes >= low) & (iframes <= high))
    if candidates.size == 0:
        distance = np.where(iframes < low, low - iframes, iframes - high)
        candidates = np.array([int(np.argmin(distance))])  # argmin: first of ties = earlier
    return int(candidates[rng.integers(candidates.size)])


def _draw_negatives(
    total: int, future_start: int, spec: ClipSpec, rng: np.random.Generator, count: int
) -> tuple[np.ndarray, bool]:
    """(count,) window starts and whether any overlaps the future window."""
    if count == 0:
        return np.zeros(0, dtype=np.int64), False
    last_frame = total - 1
    starts = np.arange(max(0, total - spec.mv_window) + 1, dtype=np.int64)
    # Windows are contiguous frame ranges after clamping: [a, min(a + w - 1, T - 1)].
    ends = np.minimum(starts + spec.mv_window - 1, last_frame)
    future_end = min(future_start + spec.mv_window - 1, last_frame)
    disjoint = (ends < future_start) | (starts > future_end)
    pool, overlap = starts[disjoint], False
    if pool.size == 0:
        overlap = True
        others = starts[starts != future_start]
        pool = others if others.size else starts
    chosen = rng.choice(pool, size=count, replace=pool.size < count)
    return chosen.astype(np.int64), overlap


def window_distance(positive: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(N,) how different each candidate MV window is from the positive window, in [0, 1]:
    ||c - p|| / (||c|| + ||p||), 0 for identical windows -- two windows in which nothing
    moves included -- and 1 for opposite ones.

    Args:
        positive: (...) the positive window's MV maps.
        candidates: (N, ...) candidate windows of the same shape.
    """
    p = positive.reshape(1, -1).astype(np.float64)
    c = candidates.reshape(len(candidates), -1).astype(np.float64)
    scale = np.linalg.norm(c, axis=1) + np.linalg.norm(p)
    return np.where(scale > 0, np.linalg.norm(c - p, axis=1) / np.maximum(scale, 1e-12), 0.0)


def pick_distinct_negatives(distances: np.ndarray, count: int, min_distance: float) -> tuple[np.ndarray, int]:
    """Positions of ``count`` hard negatives among candidates drawn in order, skipping
    near-copies of the positive: the first ``count`` candidates whose ``distances`` reach
    ``min_distance``, topped up (when too few do) with the most distant of the rest.

    Why: a negative that moves exactly like the positive (the same oscillation one period
    later, or two windows of a scene in which nothing moves) cannot be told apart from it
    by any predictor; it only adds noise to the loss.

    Returns:
        (positions (count,), how many near-copies had to be kept).
    """
    far = np.flatnonzero(distances >= min_distance)
    chosen = list(far[:count])
    near = [int(i) for i in np.argsort(-distances, kind="stable") if distances[i] < min_distance]
    kept = near[: count - len(chosen)]
    return np.array(sorted(chosen + kept), dtype=np.int64), len(kept)


@dataclass(frozen=True)
class WindowSpec:
    """The test-time clip layout (defaults: the paper's protocol, the pretraining clip)."""

    # Clips per video, spread uniformly over it (paper / VCOP / CoCLR: 10).
    clips: int = TEST_CLIPS
    # Frames per clip and their stride: the pretraining clip (16 x 4), so the network sees
    # the same temporal scale it was trained on.
    frames: int = ClipSpec.frames
    stride: int = ClipSpec.stride

    def __post_init__(self) -> None:
        for name in ("clips", "frames", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"WindowSpec.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last frame, inclusive (61 by default)."""
        return _clip_span(self.frames, self.stride)


def sliding_window_indices(num_frames: int, spec: WindowSpec = WindowSpec()) -> np.ndarray:
    """(clips, frames) int64 frame numbers of a video's test clips, all in [0, T).

    See the module docstring ("Test clips") for the rule (even starts for long videos, clamping to the
    last frame for videos shorter than one clip).

    Raises:
        ValueError: T < 1 (a complete video in a store always has frames).
    """
    total = int(num_frames)
    if total < 1:
        raise ValueError(f"a video needs at least 1 frame, got {total}")
    last_start = max(0, total - spec.span)
    starts = np.rint(np.linspace(0, last_start, spec.clips)).astype(np.int64)
    return np.minimum(starts[:, None] + _clip_offsets(spec.frames, spec.stride)[None, :], total - 1)


class RandomClipIndices:
    """One training clip per video and epoch at a uniform random start, with the layout of
    a :class:`WindowSpec` (finetuning).  Picklable, so DataLoader workers draw the same
    clip as the main process.

    The clip of video ``index`` is a pure function of (``key``, index): the caller passes
    ``key`` = (seed, stream, epoch), so every epoch draws new starts and a resumed run
    draws the same ones.  Short videos repeat their last frame like the test clips.
    """

    def __init__(self, *, key: tuple[int, ...], window: WindowSpec) -> None:
        self.key, self.window = tuple(int(k) for k in key), window

    def __call__(self, num_frames: int, index: int) -> np.ndarray:
        """(1, frames) int64 frame numbers of the clip of video ``index`` (T = num_frames)."""
        rng = np.random.default_rng([*self.key, index])
        start = int(rng.integers(0, max(0, num_frames - self.window.span) + 1))
        return np.minimum(start + _clip_offsets(self.window.frames, self.window.stride), num_frames - 1)[None]
