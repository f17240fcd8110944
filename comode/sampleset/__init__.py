"""The built-in sample dataset (``comode sample``): short labelled videos in which context
and motion are decoupled on purpose, and in which the paper's premise holds: the near-future
motion is predictable from the clip, yet differs between times of the same video.

Every clip shows a **scene** (a crop of one of the photos in ``assets/``, filmed by a
static camera by default) and textured **objects** (2-4 drawn, those whose paths would
overlap another's left out: 1-3 in the default set, mostly 2) that all move in the
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

from comode.sampleset.coverage import Coverage, mv_block_coverage
from comode.sampleset.generate import SETTINGS_FILE, VELOCITIES_FILE, generate_sample
from comode.sampleset.motion import clip_velocities, near_duplicate_share, object_centre, pattern_offset
from comode.sampleset.render import render_clip, write_clip
from comode.sampleset.spec import (
    DEFAULT_SCENES,
    MOTIONS,
    SCENES,
    ClipPlan,
    ObjectSpec,
    SampleSpec,
    make_clip,
    plan_clips,
    swept_box,
)

__all__ = [
    "Coverage",
    "mv_block_coverage",
    "SETTINGS_FILE",
    "VELOCITIES_FILE",
    "generate_sample",
    "clip_velocities",
    "near_duplicate_share",
    "object_centre",
    "pattern_offset",
    "render_clip",
    "write_clip",
    "DEFAULT_SCENES",
    "MOTIONS",
    "SCENES",
    "ClipPlan",
    "ObjectSpec",
    "SampleSpec",
    "make_clip",
    "plan_clips",
    "swept_box",
]
