"""The built-in sample dataset (``comode sample``): short labelled videos in which context
and motion are decoupled on purpose, and in which the paper's premise holds: the near-future
motion is predictable from the clip, yet differs between times of the same video.

Every clip shows a **scene** (a crop of one of the photos in ``sample_assets/``, filmed by a
static camera by default) and 2-5 (mostly 3-5) textured **objects** that all move in the
clip's **motion pattern**, on paths that never overlap (no object hides another's motion).
The two labels are independent by construction: every (motion, scene) pair gets the same
number of clips, and everything else (number of objects, their shape, texture, colour, size,
position, amplitude, period, phase and amplitude modulation) is drawn from the clip's own
random stream, independently of both labels.  So a representation that retrieves clips of
the same motion must look at motion, and one that retrieves the same scene must look at
appearance.

Motion patterns (object centre = anchor + offset(t), size = radius * scale(t); frame
coordinates, +x right, +y down, t in frames; theta(t) = 2 pi (phase + t / period), a(t) =
amplitude * (1 + depth * sin(2 pi t / modulation_period + modulation_phase))):

============  ==========================================================================
oscillate_x   back and forth along x: dx = a(t) sin theta
oscillate_y   up and down along y: dy = a(t) sin theta
circle_cw     clockwise on screen: (a cos theta, a sin theta)
circle_ccw    counter-clockwise on screen: (a cos theta, -a sin theta)
lissajous     a figure eight: (a sin theta, a_y sin(2 theta + phase_y))
pulse         the object breathes: scale = pulse_ratio ** (a(t) / amplitude * sin theta),
              so its blocks point outwards, then inwards
============  ==========================================================================

Why these: every pattern changes its velocity within a period of 28-44 frames, so the
8-frame motion window after a clip is predictable from the clip's own motion but differs
from the same clip's other windows (the hard negatives of the motion loss); the slow
amplitude modulation (period 60-120 frames, depth 0.2-0.35) makes sure no two windows of a
clip repeat exactly.  A constant velocity would make every window of a clip move alike,
so the hard negatives would differ only in where the objects are.  The camera is static
by default (``camera=True`` adds a slow pan, a nuisance independent of both labels): pan
is most of the energy of a panning clip's motion field and says nothing about the motion
label.  Objects are large (radius 14-22 px at 170 px width) and carry photo textures, so
a useful share of the MV blocks carries their motion (MPEG vectors are zero wherever the
picture does not move, and a flat colour gives block matching nothing to lock on to).
:func:`mv_block_coverage` measures that share on an extracted store, and
:func:`near_duplicate_share` measures how often a hard-negative window moves like the
positive one, from the analytic per-frame velocities (:func:`clip_velocities`) that
``velocities.npz`` records for every clip.

Layout written by :func:`generate_sample` (the ``sample`` dataset format, a ``folder``
layout plus ``labels.csv``)::

    OUT/train/<motion>/<scene>_<motion>_<k>.mp4    H.264 (x264 veryfast, lossless), yuv420p, 25 fps
    OUT/test/<motion>/<scene>_<motion>_<k>.mp4
    OUT/labels.csv      path,split,motion,scene    (path relative to OUT, POSIX separators)
    OUT/velocities.npz  <clip name> -> float32 (T, objects, 3): per frame t, each object's
                        centre displacement (dx, dy) from frame t-1 to t in px of the frame,
                        and its scale ratio scale(t) / scale(t-1) (row 0: 0, 0, 1)
    OUT/sample.json     generator settings and every clip's nuisance parameters

Everything is a pure function of (seed, clip name, frame count, size): a clip's random stream
is seeded by the seed and its name, so adding scenes or clips leaves the other clips as they
were.  Shapes: T frames, H/W height and width.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from comode.extract.encode import ffmpeg_exe

ASSETS = Path(__file__).with_name("sample_assets")
MOTIONS = ("circle_ccw", "circle_cw", "lissajous", "oscillate_x", "oscillate_y", "pulse")
# Scene names; scene X is the bundled photo sample_assets/scene_X.jpg (scikit-image sample
# data, CC0 / public domain: see sample_assets/README.md).  The first four are the default.
SCENES = ("astronaut", "cat", "coffee", "rocket", "hubble", "camera")
DEFAULT_SCENES = SCENES[:4]
TEXTURES = ("brick", "gravel", "grass")
SHAPES = ("ellipse", "box", "diamond")
REFERENCE_WIDTH = 170        # speeds and sizes below are in pixels of a 170-px-wide frame
LABELS_FILE = "labels.csv"
SETTINGS_FILE = "sample.json"
VELOCITIES_FILE = "velocities.npz"
SCENE_BLUR = 8.0             # px of the photo: see scene_photo
SCENE_GRAIN = ("gravel", 12.0)  # the fine texture every scene shares, and its strength (luma std)
SCENE_LUMA = (110.0, 40.0)   # mean and standard deviation of every scene's brightness: see scene_photo
PULSE_RATIO = (1.25, 1.45)   # a pulsing object's largest scale (its smallest is the inverse)


# ---------------------------------------------------------------- specification

@dataclass(frozen=True)
class SampleSpec:
    """What ``comode sample`` generates (defaults: 6 motions x 4 scenes x 12 = 288 clips of
    96 frames, 120 of them test clips: enough queries that one clip moves R@1 by < 1 point)."""

    seed: int = 0
    videos_per_class: int = 48           # clips per motion class, spread evenly over the scenes
    frames: int = 96                     # T: 3.84 s at 25 fps (a pretraining sample spans <= 70 frames)
    width: int = 170
    height: int = 128
    fps: int = 25
    motions: tuple[str, ...] = MOTIONS
    scenes: tuple[str, ...] = DEFAULT_SCENES
    test_fraction: float = 0.4           # per (motion, scene) cell, rounded: 12 clips -> 5 test
    camera: bool = False                 # pan the camera slowly (a label-independent nuisance)

    def __post_init__(self) -> None:
        unknown = [m for m in self.motions if m not in MOTIONS] + [s for s in self.scenes if s not in SCENES]
        if unknown:
            raise ValueError(f"unknown motion/scene {unknown}; motions: {', '.join(MOTIONS)}; scenes: {', '.join(SCENES)}")
        if not self.motions or not self.scenes or len(set(self.motions)) < len(self.motions) or len(set(self.scenes)) < len(self.scenes):
            raise ValueError("need at least one motion and one scene, without repeats")
        if self.videos_per_class < 1 or self.frames < 2 or self.width < 32 or self.height < 32 or self.fps < 1:
            raise ValueError("videos_per_class >= 1, frames >= 2, width/height >= 32 and fps >= 1 are required")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even (yuv420p), got {self.width}x{self.height}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class ObjectSpec:
    """One moving object: its look and its motion parameters (pixels of the output frame)."""

    shape: str                           # ellipse | box | diamond
    texture: str                         # one of TEXTURES (grey photo texture, tinted)
    texture_origin: tuple[float, float]  # where in the texture the crop starts, fraction of its free room
    dark: tuple[int, int, int]           # RGB the texture's black maps to
    light: tuple[int, int, int]          # RGB the texture's white maps to
    radius: float                        # half the object's size at scale 1
    aspect: float                        # height / width of the object
    anchor: tuple[float, float]          # (x, y) centre the pattern moves around
    amplitude: float                     # px: oscillation / circle / lissajous x amplitude (pulse: unused)
    amplitude_y: float                   # px: lissajous y amplitude (other patterns: unused)
    phase_y: float                       # radians: lissajous y phase
    pulse_ratio: float                   # pulse: largest scale (smallest = 1 / pulse_ratio)
    period: float                        # frames of one cycle of the pattern
    phase: float                         # in [0, 1): where in its period the object starts
    depth: float                         # amplitude modulation depth (0: none)
    modulation_period: float             # frames of one cycle of the amplitude modulation
    modulation_phase: float              # radians


@dataclass(frozen=True)
class ClipSpec:
    """One clip: labels, split and every random choice (so it can be re-rendered exactly)."""

    name: str                            # <scene>_<motion>_<k>
    motion: str
    scene: str
    split: str                           # train | test
    frames: int
    width: int
    height: int
    fps: int
    camera_start: tuple[float, float]    # centre of the view in scene-photo pixels at t = 0
    camera_velocity: tuple[float, float]  # scene-photo pixels per frame ((0, 0): static camera)
    camera_scale: float                  # scene-photo pixels per frame pixel
    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)

    @property
    def path(self) -> str:
        """Path relative to the dataset root, POSIX separators."""
        return f"{self.split}/{self.motion}/{self.name}.mp4"

    @property
    def background_velocity(self) -> tuple[float, float]:
        """How the background moves in the frame, px/frame (the opposite of the camera's pan)."""
        return (-self.camera_velocity[0] / self.camera_scale, -self.camera_velocity[1] / self.camera_scale)


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A random stream that depends only on the seed and the names (not on other clips)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, *(zlib.crc32(n.encode()) for n in names)])


def cell_counts(spec: SampleSpec) -> dict[tuple[str, str], int]:
    """(motion, scene) -> number of clips: videos_per_class spread over the scenes, the
    remainder to the first scenes."""
    base, extra = divmod(spec.videos_per_class, len(spec.scenes))
    return {(m, s): base + (i < extra) for m in spec.motions for i, s in enumerate(spec.scenes)}


def split_test_indices(spec: SampleSpec, motion: str, scene: str, n: int) -> set[int]:
    """Which of a cell's n clips are test clips: round(n * test_fraction) of them (at least
    one when n >= 2 and test_fraction > 0), chosen by the cell's own random stream."""
    k = int(math.floor(n * spec.test_fraction + 0.5))
    if spec.test_fraction > 0 and n >= 2:
        k = max(k, 1)
    return {int(i) for i in _rng(spec.seed, "split", motion, scene).permutation(n)[:k]}


def plan_clips(spec: SampleSpec) -> list[ClipSpec]:
    """Every clip of the dataset, sorted by path; a pure function of ``spec``."""
    clips = []
    for (motion, scene), n in cell_counts(spec).items():
        test = split_test_indices(spec, motion, scene, n)
        for k in range(n):
            clips.append(make_clip(spec, motion, scene, k, "test" if k in test else "train"))
    return sorted(clips, key=lambda c: c.path)


def make_clip(spec: SampleSpec, motion: str, scene: str, k: int, split: str) -> ClipSpec:
    """Draw a clip's nuisance parameters from its own random stream."""
    name = f"{scene}_{motion}_{k:03d}"
    rng = _rng(spec.seed, name)
    w, h, unit = spec.width, spec.height, spec.width / REFERENCE_WIDTH
    photo_w, photo_h = scene_photo(scene).size
    # The view covers ~55% of the photo's width (a crop, not the whole picture), so a pan
    # has room and different clips of a scene show different parts of it.
    scale = 0.55 * photo_w / w
    # Drawn even for a static camera, so that camera=True gives the same clips, only panning.
    angle, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.5) * unit * spec.camera    # frame px / frame
    velocity = (math.cos(angle) * speed * scale, math.sin(angle) * speed * scale)             # photo px / frame
    # Start where the whole pan stays inside the photo (clamped when a long clip needs more room).
    half_w, half_h = w * scale / 2, h * scale / 2
    start = []
    for v, half, size in ((velocity[0], half_w, photo_w), (velocity[1], half_h, photo_h)):
        travel = v * (spec.frames - 1)
        low, high = half - min(travel, 0.0), size - half - max(travel, 0.0)
        start.append(float(rng.uniform(low, high)) if low < high else size / 2 - travel / 2)
    objects = _make_objects(rng, w, h, unit)
    return ClipSpec(name=name, motion=motion, scene=scene, split=split, frames=spec.frames, width=w, height=h,
                    fps=spec.fps, camera_start=(start[0], start[1]), camera_velocity=velocity, camera_scale=scale,
                    objects=objects)


def _make_objects(rng: np.random.Generator, w: int, h: int, unit: float) -> tuple[ObjectSpec, ...]:
    """2-4 objects whose paths never overlap (so no object hides another's motion): each
    new object gets up to 30 tries at a position whose footprint is clear of the others'
    and is left out if none fits (at least one object is always kept).  Footprints do not
    depend on the motion pattern (:func:`swept_box`), so neither do the number, size and
    placement of the objects: a single frame says nothing about the motion label."""
    wanted, objects, boxes = int(rng.integers(2, 5)), [], []
    for _ in range(wanted):
        for attempt in range(30):
            obj = _make_object(rng, w, h, unit)
            box = swept_box(obj)
            if not objects or not any(_overlap(box, other) for other in boxes):
                objects.append(obj)
                boxes.append(box)
                break
    return tuple(objects)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _reach(obj: ObjectSpec) -> tuple[float, float]:
    """(x, y): how far any pixel of the object can get from its anchor under ANY pattern
    (the largest of the translations and of the pulse), so that placement is the same
    whatever the clip's motion label."""
    rx, ry = obj.radius, obj.radius * obj.aspect
    peak = 1.0 + obj.depth  # the modulation's largest factor
    grown = obj.pulse_ratio ** peak
    return (max(rx + obj.amplitude * peak, rx * grown),
            max(ry + max(obj.amplitude, obj.amplitude_y) * peak, ry * grown))


def swept_box(obj: ObjectSpec) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): the object's footprint, a box holding every pixel it could cover
    during the clip under any pattern (with a 2-px margin)."""
    rx, ry = _reach(obj)
    ax, ay = obj.anchor
    return (ax - rx - 2, ay - ry - 2, ax + rx + 2, ay + ry + 2)


def _make_object(rng: np.random.Generator, w: int, h: int, unit: float) -> ObjectSpec:
    """An object drawn independently of the motion label (every pattern uses its own subset
    of these parameters).  Peak speeds stay within ~3 px/frame (6 px at the 340-px MV
    stream): faster motion than that is often missed by the encoder's motion search."""
    dark = rng.integers(0, 110, 3)
    light = np.minimum(dark + rng.integers(110, 200, 3), 255)
    amplitude = float(rng.uniform(8, 14) * unit)
    draws = dict(
        shape=SHAPES[int(rng.integers(len(SHAPES)))], texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        texture_origin=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        dark=tuple(int(c) for c in dark), light=tuple(int(c) for c in light),
        radius=float(rng.uniform(13, 19) * unit), aspect=float(rng.uniform(0.8, 1.25)),
        amplitude=amplitude, amplitude_y=float(amplitude * rng.uniform(0.6, 0.9)),
        phase_y=float(rng.uniform(0, 2 * math.pi)), pulse_ratio=float(rng.uniform(*PULSE_RATIO)),
        period=float(rng.uniform(28, 44)), phase=float(rng.uniform(0, 1)),
        depth=float(rng.uniform(0.2, 0.35)), modulation_period=float(rng.uniform(60, 120)),
        modulation_phase=float(rng.uniform(0, 2 * math.pi)))
    # The anchor keeps the whole footprint inside the frame (centred when it cannot).
    rx, ry = _reach(ObjectSpec(anchor=(0.0, 0.0), **draws))
    anchor = (float(rng.uniform(rx, w - rx)) if rx < w / 2 else w / 2,
              float(rng.uniform(ry, h - ry)) if ry < h / 2 else h / 2)
    return ObjectSpec(anchor=anchor, **draws)


# ---------------------------------------------------------------- motion patterns

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
    if motion == "circle_cw":      # y grows downwards: increasing angle turns clockwise on screen
        return a * math.cos(theta), a * math.sin(theta), 1.0
    if motion == "circle_ccw":
        return a * math.cos(theta), -a * math.sin(theta), 1.0
    if motion == "lissajous":
        return a * math.sin(theta), obj.amplitude_y * factor * math.sin(2 * theta + obj.phase_y), 1.0
    if motion == "pulse":
        return 0.0, 0.0, obj.pulse_ratio ** (factor * math.sin(theta))
    raise ValueError(f"unknown motion pattern {motion!r}")


def object_centre(clip: ClipSpec, obj: ObjectSpec, t: float) -> tuple[float, float, float]:
    """(x, y, scale) of the object in frame ``t``."""
    dx, dy, scale = pattern_offset(clip.motion, obj, t)
    return obj.anchor[0] + dx, obj.anchor[1] + dy, scale


def max_scale(clip: ClipSpec, obj: ObjectSpec) -> float:
    """The largest scale the object reaches (its sprite is drawn at that size)."""
    return obj.pulse_ratio ** (1.0 + obj.depth) if clip.motion == "pulse" else 1.0


def clip_velocities(clip: ClipSpec) -> np.ndarray:
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
    part = velocities[first:first + length]
    rim = (part[:, :, 2] - 1.0) * np.asarray(radius, np.float32)[None, :]
    return np.concatenate([part[:, :, :2], rim[:, :, None]], axis=-1)


def near_duplicate_share(clips: Sequence[ClipSpec], *, window: int = 8, threshold: float = 0.25,
                         gap: int = 2, clip_span: int = 61, negatives: int = 3, draws: int = 20,
                         seed: int = 0) -> float:
    """Share of hard-negative MV windows that move like their positive, from the analytic
    velocities: a negative is a near-copy when the RMS difference of the per-frame motion
    of every object over the window (centre displacement and rim growth, px/frame) is below
    ``threshold`` times the positive's RMS motion.  Windows are drawn like the pretraining
    sampler (:func:`comode.train.sampling.sample_indices` with the given layout): the
    positive ``gap`` frames after a clip of span ``clip_span``, the negatives anywhere that
    does not overlap it; ``draws`` samples per clip."""
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
            scale = math.sqrt(float(np.mean(positive ** 2))) + 1e-6
            for start in rng.choice(free, size=min(negatives, free.size), replace=False):
                negative = window_motion(velocities, int(start), window, radius=radius)
                near += math.sqrt(float(np.mean((negative - positive) ** 2))) < threshold * scale
                total += 1
    return near / total if total else 0.0


# ---------------------------------------------------------------- rendering

@lru_cache(maxsize=None)
def scene_photo(scene: str) -> Image.Image:
    """The background of a scene, RGB (312, 416): the bundled photo blurred by
    ``SCENE_BLUR`` px, brought to the same mean and spread of brightness as every other
    scene (``SCENE_LUMA``), with one fine grain shared by all scenes on top (``SCENE_GRAIN``).

    Why: MPEG block matching finds small spurious vectors around moving objects, and how
    many depends on the background's texture and brightness there (a half-object,
    half-background block follows whichever half dominates).  With the photos as they
    are, the motion vectors alone told the four scenes apart (the MV-statistics leakage
    probe of :mod:`comode.evaluate.leakage`: 48-52 % against 25 % chance; blur or
    brightness alone did not fix it).  Scenes that differ only in their large-scale colour
    layout, over the same grain, leave the vectors alike everywhere (26 %, at chance) while
    a single frame still names the scene (100 %)."""
    with Image.open(ASSETS / f"scene_{scene}.jpg") as image:
        photo = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(SCENE_BLUR)), np.float32)
    luma = photo @ np.array([0.299, 0.587, 0.114], np.float32)
    scale = SCENE_LUMA[1] / max(float(luma.std()), 1.0)
    normalised = (photo - luma.mean()) * scale + SCENE_LUMA[0]
    grain = np.asarray(texture_photo(SCENE_GRAIN[0]), np.float32)
    reps = (-(-photo.shape[0] // grain.shape[0]), -(-photo.shape[1] // grain.shape[1]))
    grain = np.tile(grain, reps)[: photo.shape[0], : photo.shape[1]]
    grain = (grain - grain.mean()) / max(float(grain.std()), 1.0) * SCENE_GRAIN[1]
    return Image.fromarray(np.clip(normalised + grain[..., None], 0, 255).round().astype(np.uint8), "RGB")


@lru_cache(maxsize=None)
def texture_photo(texture: str) -> Image.Image:
    """The bundled grey texture, L (128, 128)."""
    with Image.open(ASSETS / f"texture_{texture}.jpg") as image:
        return image.convert("L")


def render_background(clip: ClipSpec, t: int) -> Image.Image:
    """Frame ``t`` of the background: the view of the panning camera, RGB (H, W)."""
    s = clip.camera_scale
    cx = clip.camera_start[0] + clip.camera_velocity[0] * t
    cy = clip.camera_start[1] + clip.camera_velocity[1] * t
    # Output pixel (u, v) samples the photo at (cx + (u - W/2) s, cy + (v - H/2) s).
    coefficients = (s, 0.0, cx - clip.width / 2 * s, 0.0, s, cy - clip.height / 2 * s)
    return scene_photo(clip.scene).transform((clip.width, clip.height), Image.Transform.AFFINE, coefficients,
                                             resample=Image.Resampling.BILINEAR)


def make_sprite(obj: ObjectSpec, largest: float) -> Image.Image:
    """The object drawn at its largest size: RGBA, textured and tinted, alpha = its shape
    (anti-aliased).  The colour is defined everywhere, so bilinear sampling at the edge
    blends texture into transparency, not into black."""
    rw, rh = obj.radius * largest, obj.radius * largest * obj.aspect
    size = (max(4, int(math.ceil(2 * rw)) + 2), max(4, int(math.ceil(2 * rh)) + 2))
    grey = _texture_crop(obj, size)                                           # (h, w) in [0, 1]
    dark, light = np.array(obj.dark, np.float32), np.array(obj.light, np.float32)
    rgb = (dark + grey[..., None] * (light - dark)).round().astype(np.uint8)   # (h, w, 3)
    supersample = 4
    mask = Image.new("L", (size[0] * supersample, size[1] * supersample), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = size[0] * supersample / 2, size[1] * supersample / 2
    ax, ay = rw * supersample, rh * supersample
    if obj.shape == "ellipse":
        draw.ellipse((cx - ax, cy - ay, cx + ax, cy + ay), fill=255)
    elif obj.shape == "box":
        draw.rectangle((cx - ax * 0.85, cy - ay * 0.85, cx + ax * 0.85, cy + ay * 0.85), fill=255)
    else:
        draw.polygon([(cx, cy - ay), (cx + ax, cy), (cx, cy + ay), (cx - ax, cy)], fill=255)
    alpha = mask.resize(size, Image.Resampling.BOX)
    sprite = Image.fromarray(rgb, "RGB")
    sprite.putalpha(alpha)
    return sprite


def _texture_crop(obj: ObjectSpec, size: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 in [0, 1]: a crop of the object's texture at its own resolution (tiled
    when the sprite is larger), contrast-stretched so block matching has detail to lock on to."""
    texture = np.asarray(texture_photo(obj.texture), dtype=np.float32)
    w, h = size
    reps = (-(-h // texture.shape[0]) + 1, -(-w // texture.shape[1]) + 1)
    tiled = np.tile(texture, reps)
    y0 = int(obj.texture_origin[1] * (tiled.shape[0] - h))
    x0 = int(obj.texture_origin[0] * (tiled.shape[1] - w))
    crop = tiled[y0 : y0 + h, x0 : x0 + w]
    low, high = np.percentile(crop, (2, 98))
    return np.clip((crop - low) / max(high - low, 1.0), 0.0, 1.0)


def render_clip(clip: ClipSpec) -> np.ndarray:
    """Every frame of a clip: (T, H, W, 3) uint8 RGB.  Deterministic (Pillow's resampling)."""
    largest = [max_scale(clip, obj) for obj in clip.objects]
    sprites = [make_sprite(obj, top) for obj, top in zip(clip.objects, largest)]
    out = np.empty((clip.frames, clip.height, clip.width, 3), dtype=np.uint8)
    for t in range(clip.frames):
        frame = render_background(clip, t).convert("RGBA")
        for obj, sprite, top in zip(clip.objects, sprites, largest):
            x, y, scale = object_centre(clip, obj, t)
            k = top / scale                  # sprite pixels per frame pixel
            # Output pixel (u, v) samples the sprite at ((u - x) k + w/2, (v - y) k + h/2).
            coefficients = (k, 0.0, sprite.width / 2 - x * k, 0.0, k, sprite.height / 2 - y * k)
            layer = sprite.transform((clip.width, clip.height), Image.Transform.AFFINE, coefficients,
                                     resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0, 0))
            frame.alpha_composite(layer)
        out[t] = np.asarray(frame.convert("RGB"))
    return out


# ---------------------------------------------------------------- writing

@lru_cache(maxsize=None)
def video_encoder() -> tuple[str, ...]:
    """ffmpeg encoder options for the clips: lossless x264 (CRF 0) when the binary has it, else
    MPEG-4 Part 2 at its finest quantiser.  Lossless, so that what moves in a clip is only
    what the generator moved: a lossy source flickers on the static background's grain, and
    block matching would read the flicker as motion (~4x the bytes of CRF 16, ~50 MB for
    the default set)."""
    listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=60).stdout
    if " libx264 " in listing:
        return ("-c:v", "libx264", "-preset", "veryfast", "-crf", "0", "-threads", "1")
    return ("-c:v", "mpeg4", "-q:v", "2", "-threads", "1")


def write_clip(path: Path, frames: np.ndarray, *, fps: int) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames to an MP4 at ``path`` (written to a temporary
    name first, so a killed run leaves no truncated video under the final name)."""
    t, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.mp4")
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", *video_encoder(), "-pix_fmt", "yuv420p",
               "-fflags", "+bitexact", "-map_metadata", "-1", str(partial)]
    subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), check=True, capture_output=True,
                   timeout=600)
    os.replace(partial, path)
    return path


def generate_clip(clip: ClipSpec, out: Path) -> ClipSpec:
    """Render and write one clip under ``out`` (the unit of work of the process pool)."""
    write_clip(out / clip.path, render_clip(clip), fps=clip.fps)
    return clip


def _clip_record(clip: ClipSpec) -> dict:
    record = asdict(clip)
    record["path"] = clip.path
    record["background_velocity"] = clip.background_velocity
    return record


def generate_sample(spec: SampleSpec, out: str | Path, *, workers: int | None = None, overwrite: bool = False,
                    on_clip: Callable[[ClipSpec, int, int], None] | None = None) -> list[ClipSpec]:
    """Write the sample dataset described by ``spec`` to ``out``; returns its clips.

    ``out`` must be empty or absent, or hold an earlier sample set (then ``overwrite``
    replaces its train/, test/, labels.csv and sample.json; nothing else is touched).
    ``workers``: rendering processes (default: one per core; 0 or 1 = in this process).
    ``on_clip(clip, done, total)`` is called as clips finish.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / SETTINGS_FILE).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {SETTINGS_FILE}: choose an empty or new folder")
        if not overwrite:
            raise FileExistsError(f"{out} already holds a sample set; pass overwrite=True (--overwrite) to replace it")
        for name in ("train", "test"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (LABELS_FILE, SETTINGS_FILE, VELOCITIES_FILE):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    clips = plan_clips(spec)
    workers = workers if workers is not None else _default_workers()
    for done, clip in enumerate(_run(clips, out, workers), 1):
        if on_clip:
            on_clip(clip, done, len(clips))
    np.savez_compressed(out / VELOCITIES_FILE, **{c.name: clip_velocities(c) for c in clips})
    with (out / LABELS_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "split", "motion", "scene"])
        writer.writerows([c.path, c.split, c.motion, c.scene] for c in clips)
    settings = {"generator": "comode sample", "spec": asdict(spec), "encoder": list(video_encoder()),
                "assets": "comode/extract/sample_assets/README.md (scikit-image sample data, CC0 / public domain)",
                "clips": [_clip_record(c) for c in clips]}
    # Written last: its presence marks a finished set.
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    return clips


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _run(clips: Sequence[ClipSpec], out: Path, workers: int) -> Iterator[ClipSpec]:
    if workers <= 1 or len(clips) <= 1:
        for clip in clips:
            yield generate_clip(clip, out)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(generate_clip, clips, [out] * len(clips), chunksize=1)


# ---------------------------------------------------------------- measuring

@dataclass(frozen=True)
class Coverage:
    """Share of motion-vector grid cells of P-frames that carry a non-zero vector."""

    videos: int
    p_frames: int
    blocks: int                          # P-frame grid cells counted
    moving: int                          # of which non-zero
    by_label: dict[str, float]           # class name -> share

    @property
    def share(self) -> float:
        return self.moving / self.blocks if self.blocks else 0.0


def mv_block_coverage(store_url: str, *, video_ids: Sequence[str] | None = None) -> Coverage:
    """Measure, on an extracted store, the share of P-frame MV grid cells (16x16 blocks of
    the MV-stream frame) whose vector is not (0, 0)."""
    from comode.store import open_store

    store = open_store(store_url)
    ids = list(video_ids) if video_ids is not None else store.video_ids()
    p_frames = blocks = moving = 0
    per_label: dict[str, list[int]] = {}
    for video_id in ids:
        video = store.video(video_id)
        types = np.frombuffer(video.frame_types.encode(), np.uint8)
        mvs = np.asarray(video.mvs[:])                               # (T, 2, gh, gw)
        p = mvs[types == ord("P")]
        nonzero = int(np.count_nonzero(np.any(p != 0, axis=1)))
        cells = int(p.shape[0] * p.shape[2] * p.shape[3])
        p_frames, blocks, moving = p_frames + p.shape[0], blocks + cells, moving + nonzero
        counts = per_label.setdefault(str(video.attrs.get("class_name")), [0, 0])
        counts[0], counts[1] = counts[0] + nonzero, counts[1] + cells
    return Coverage(videos=len(ids), p_frames=p_frames, blocks=blocks, moving=moving,
                    by_label={k: (m / b if b else 0.0) for k, (m, b) in sorted(per_label.items())})
