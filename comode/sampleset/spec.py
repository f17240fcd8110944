"""What the sample set is made of: its specification, and every clip's random choices
(:func:`plan_clips`), a pure function of the specification.  See :mod:`comode.sampleset`.

Shapes: T frames, H/W height and width."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from comode.sampleset.assets import SCENES, TEXTURES, scene_photo

MOTIONS = ("circle_ccw", "circle_cw", "lissajous", "oscillate_x", "oscillate_y", "pulse")
DEFAULT_SCENES = SCENES[:4]
SHAPES = ("ellipse", "box", "diamond")
REFERENCE_WIDTH = 170  # speeds and sizes below are in pixels of a 170-px-wide frame
PULSE_RATIO = (1.25, 1.45)  # a pulsing object's largest scale (its smallest is the inverse)


@dataclass(frozen=True)
class SampleSpec:
    """What ``comode sample`` generates (defaults: 6 motions x 4 scenes x 12 = 288 clips of
    96 frames, 120 of them test clips: enough queries that one clip moves R@1 by < 1 point)."""

    seed: int = 0
    videos_per_class: int = 48  # clips per motion class, spread evenly over the scenes
    frames: int = 96  # T: 3.84 s at 25 fps (a pretraining sample spans <= 70 frames)
    width: int = 170
    height: int = 128
    fps: int = 25
    motions: tuple[str, ...] = MOTIONS
    scenes: tuple[str, ...] = DEFAULT_SCENES
    test_fraction: float = 0.4  # per (motion, scene) cell, rounded: 12 clips -> 5 test
    camera: bool = False  # pan the camera slowly (a label-independent nuisance)

    def __post_init__(self) -> None:
        unknown = [m for m in self.motions if m not in MOTIONS] + [s for s in self.scenes if s not in SCENES]
        if unknown:
            raise ValueError(
                f"unknown motion/scene {unknown}; motions: {', '.join(MOTIONS)}; scenes: {', '.join(SCENES)}"
            )
        if (
            not self.motions
            or not self.scenes
            or len(set(self.motions)) < len(self.motions)
            or len(set(self.scenes)) < len(self.scenes)
        ):
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

    shape: str  # ellipse | box | diamond
    texture: str  # one of TEXTURES (grey photo texture, tinted)
    texture_origin: tuple[float, float]  # where in the texture the crop starts, fraction of its free room
    dark: tuple[int, int, int]  # RGB the texture's black maps to
    light: tuple[int, int, int]  # RGB the texture's white maps to
    radius: float  # half the object's size at scale 1
    aspect: float  # height / width of the object
    anchor: tuple[float, float]  # (x, y) centre the pattern moves around
    amplitude: float  # px: oscillation / circle / lissajous x amplitude (pulse: unused)
    amplitude_y: float  # px: lissajous y amplitude (other patterns: unused)
    phase_y: float  # radians: lissajous y phase
    pulse_ratio: float  # pulse: largest scale (smallest = 1 / pulse_ratio)
    period: float  # frames of one cycle of the pattern
    phase: float  # in [0, 1): where in its period the object starts
    depth: float  # amplitude modulation depth (0: none)
    modulation_period: float  # frames of one cycle of the amplitude modulation
    modulation_phase: float  # radians


@dataclass(frozen=True)
class ClipPlan:
    """One clip: labels, split and every random choice (so it can be re-rendered exactly)."""

    name: str  # <scene>_<motion>_<k>
    motion: str
    scene: str
    split: str  # train | test
    frames: int
    width: int
    height: int
    fps: int
    camera_start: tuple[float, float]  # centre of the view in scene-photo pixels at t = 0
    camera_velocity: tuple[float, float]  # scene-photo pixels per frame ((0, 0): static camera)
    camera_scale: float  # scene-photo pixels per frame pixel
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


def plan_clips(spec: SampleSpec) -> list[ClipPlan]:
    """Every clip of the dataset, sorted by path; a pure function of ``spec``."""
    clips = []
    for (motion, scene), n in cell_counts(spec).items():
        test = split_test_indices(spec, motion, scene, n)
        for k in range(n):
            clips.append(make_clip(spec, motion, scene, k, "test" if k in test else "train"))
    return sorted(clips, key=lambda c: c.path)


def make_clip(spec: SampleSpec, motion: str, scene: str, k: int, split: str) -> ClipPlan:
    """Draw a clip's nuisance parameters from its own random stream."""
    name = f"{scene}_{motion}_{k:03d}"
    rng = _rng(spec.seed, name)
    w, h, unit = spec.width, spec.height, spec.width / REFERENCE_WIDTH
    photo_w, photo_h = scene_photo(scene).size
    # The view covers ~55% of the photo's width (a crop, not the whole picture), so a pan
    # has room and different clips of a scene show different parts of it.
    scale = 0.55 * photo_w / w
    # Drawn even for a static camera, so that camera=True gives the same clips, only panning.
    angle, speed = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.5) * unit * spec.camera  # frame px / frame
    velocity = (math.cos(angle) * speed * scale, math.sin(angle) * speed * scale)  # photo px / frame
    # Start where the whole pan stays inside the photo (clamped when a long clip needs more room).
    half_w, half_h = w * scale / 2, h * scale / 2
    start = []
    for v, half, size in ((velocity[0], half_w, photo_w), (velocity[1], half_h, photo_h)):
        travel = v * (spec.frames - 1)
        low, high = half - min(travel, 0.0), size - half - max(travel, 0.0)
        start.append(float(rng.uniform(low, high)) if low < high else size / 2 - travel / 2)
    objects = _make_objects(rng, w, h, unit)
    return ClipPlan(
        name=name,
        motion=motion,
        scene=scene,
        split=split,
        frames=spec.frames,
        width=w,
        height=h,
        fps=spec.fps,
        camera_start=(start[0], start[1]),
        camera_velocity=velocity,
        camera_scale=scale,
        objects=objects,
    )


def _make_objects(rng: np.random.Generator, w: int, h: int, unit: float) -> tuple[ObjectSpec, ...]:
    """2-4 objects whose paths never overlap (so no object hides another's motion): each
    new object gets up to 30 tries at a position whose footprint is clear of the others'
    and is left out if none fits (at least one object is always kept).  Footprints do not
    depend on the motion pattern (:func:`swept_box`), so neither do the number, size and
    placement of the objects: a single frame says nothing about the motion label."""
    wanted, objects, boxes = int(rng.integers(2, 5)), [], []
    for _ in range(wanted):
        for _attempt in range(30):
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
    grown = obj.pulse_ratio**peak
    return (
        max(rx + obj.amplitude * peak, rx * grown),
        max(ry + max(obj.amplitude, obj.amplitude_y) * peak, ry * grown),
    )


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
        shape=SHAPES[int(rng.integers(len(SHAPES)))],
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        texture_origin=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        dark=tuple(int(c) for c in dark),
        light=tuple(int(c) for c in light),
        radius=float(rng.uniform(13, 19) * unit),
        aspect=float(rng.uniform(0.8, 1.25)),
        amplitude=amplitude,
        amplitude_y=float(amplitude * rng.uniform(0.6, 0.9)),
        phase_y=float(rng.uniform(0, 2 * math.pi)),
        pulse_ratio=float(rng.uniform(*PULSE_RATIO)),
        period=float(rng.uniform(28, 44)),
        phase=float(rng.uniform(0, 1)),
        depth=float(rng.uniform(0.2, 0.35)),
        modulation_period=float(rng.uniform(60, 120)),
        modulation_phase=float(rng.uniform(0, 2 * math.pi)),
    )
    # The anchor keeps the whole footprint inside the frame (centred when it cannot).
    rx, ry = _reach(ObjectSpec(anchor=(0.0, 0.0), **draws))
    anchor = (
        float(rng.uniform(rx, w - rx)) if rx < w / 2 else w / 2,
        float(rng.uniform(ry, h - ry)) if ry < h / 2 else h / 2,
    )
    return ObjectSpec(anchor=anchor, **draws)
