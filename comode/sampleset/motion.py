"""The motion patterns of the sample set as functions of time, and the analytic
velocities they give (what the store's ``mvs[t]`` should show).  See :mod:`comode.sampleset`."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from comode.data.frames import ClipSpec
from comode.sampleset.spec import ClipPlan, ObjectSpec


def _modulated(obj: ObjectSpec, t: float) -> float:
    """The amplitude factor a(t) / amplitude: a slow sine around 1 (see the module docstring)."""
    return 1.0 + obj.depth * math.sin(2 * math.pi * t / obj.modulation_period + obj.modulation_phase)


def pattern_offset(motion: str, obj: ObjectSpec, t: float) -> tuple[float, float, float]:
    """Motion pattern as a function of time: (dx, dy, scale) of ``obj`` at frame ``t``.

    dx, dy: offset of the object's centre from its anchor, px (+x right, +y down);
    scale: its size relative to ``obj.radius``.
    """
    theta = 2 * math.pi * (obj.phase + t / obj.period)
    factor = _modulated(obj, t)
    a = obj.amplitude * factor
    if motion == "oscillate_x":
        return a * math.sin(theta), 0.0, 1.0
    if motion == "oscillate_y":
        return 0.0, a * math.sin(theta), 1.0
    if motion == "circle_cw":  # y grows downwards: increasing angle turns clockwise on screen
        return a * math.cos(theta), a * math.sin(theta), 1.0
    if motion == "circle_ccw":
        return a * math.cos(theta), -a * math.sin(theta), 1.0
    if motion == "lissajous":
        return a * math.sin(theta), obj.amplitude_y * factor * math.sin(2 * theta + obj.phase_y), 1.0
    if motion == "pulse":
        return 0.0, 0.0, obj.pulse_ratio ** (factor * math.sin(theta))
    raise ValueError(f"unknown motion pattern {motion!r}")


def object_centre(clip: ClipPlan, obj: ObjectSpec, t: float) -> tuple[float, float, float]:
    """(x, y, scale) of the object in frame ``t``."""
    dx, dy, scale = pattern_offset(clip.motion, obj, t)
    return obj.anchor[0] + dx, obj.anchor[1] + dy, scale


def max_scale(clip: ClipPlan, obj: ObjectSpec) -> float:
    """The largest scale the object reaches (its sprite is drawn at that size)."""
    return obj.pulse_ratio ** (1.0 + obj.depth) if clip.motion == "pulse" else 1.0


def clip_velocities(clip: ClipPlan) -> np.ndarray:
    """(T, objects, 3) float32 analytic per-frame motion, in the convention of the store's
    ``mvs[t]`` (from frame t-1 to frame t): (dx, dy) of each object's centre in px of the
    frame, and its scale ratio scale(t) / scale(t-1).  Row 0 is (0, 0, 1)."""
    out = np.zeros((clip.frames, len(clip.objects), 3), np.float32)
    out[:, :, 2] = 1.0
    for j, obj in enumerate(clip.objects):
        previous = object_centre(clip, obj, 0)
        for t in range(1, clip.frames):
            current = object_centre(clip, obj, t)
            out[t, j] = (current[0] - previous[0], current[1] - previous[1], current[2] / previous[2])
            previous = current
    return out


def window_motion(velocities: np.ndarray, first: int, length: int, *, radius: Sequence[float]) -> np.ndarray:
    """(length, objects, 3) what an MV window starting at frame ``first`` shows of each
    object: its centre displacement per frame, plus for scale changes the displacement of its
    rim (radius x (ratio - 1)), so growth and shrinking count as motion too."""
    part = velocities[first : first + length]
    rim = (part[:, :, 2] - 1.0) * np.asarray(radius, np.float32)[None, :]
    return np.concatenate([part[:, :, :2], rim[:, :, None]], axis=-1)


def near_duplicate_share(
    clips: Sequence[ClipPlan], *, layout: ClipSpec = ClipSpec(), threshold: float = 0.25, draws: int = 20, seed: int = 0
) -> float:
    """Share of hard-negative MV windows that move like their positive, from the analytic
    velocities: a negative is a near-copy when the RMS difference of the per-frame motion
    of every object over the window (centre displacement and rim growth, px/frame) is below
    ``threshold`` times the positive's RMS motion.  Windows are drawn like the pretraining
    sampler (:func:`comode.data.frames.sample_indices` with the given ``layout``, by
    default the pretraining one): the positive ``future_gap`` frames after a clip of span
    ``clip_span``, the ``negatives`` anywhere that does not overlap it; ``draws`` samples
    per clip."""
    window, gap, clip_span, negatives = layout.mv_window, layout.future_gap, layout.clip_span, layout.negatives
    rng = np.random.default_rng(seed)
    near = total = 0
    for clip in clips:
        velocities = clip_velocities(clip)
        radius = [obj.radius for obj in clip.objects]
        last_start = clip.frames - (clip_span - 1 + gap + window)
        if last_start < 0:
            continue
        for _ in range(draws):
            future = int(rng.integers(0, last_start + 1)) + clip_span - 1 + gap
            starts = np.arange(1, clip.frames - window + 1)
            free = starts[(starts + window <= future) | (starts >= future + window)]
            positive = window_motion(velocities, future, window, radius=radius)
            scale = math.sqrt(float(np.mean(positive**2))) + 1e-6
            for start in rng.choice(free, size=min(negatives, free.size), replace=False):
                negative = window_motion(velocities, int(start), window, radius=radius)
                near += math.sqrt(float(np.mean((negative - positive) ** 2))) < threshold * scale
                total += 1
    return near / total if total else 0.0
