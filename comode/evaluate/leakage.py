"""Leakage probes: can one label set be read off a signal that should not carry it?

A labelled set built to test motion (the built-in sample set, or any set with a motion and
a scene label) is only useful if its labels are decoupled the way it claims:

* **I-frame -> motion**: a single still frame (the video's middle I-frame, as a small
  colour thumbnail plus a colour histogram) must say nothing about the motion label.  If
  it does, the objects' look, number or placement follows the motion class, and a network
  can "retrieve motion" from appearance.
* **MV statistics -> scene**: the motion vectors alone (histograms of direction and
  magnitude, the share of moving blocks, the motion energy along rows and columns) must
  say nothing about the scene label.  If they do, the camera or the objects move
  differently per scene.

Each probe is the linear probe of :mod:`comode.evaluate.linear` (logistic regression, fit
on the split's train videos, scored on its test videos) and is reported beside chance
(1 / classes) and the band a guess at chance falls in (the central 95 % of a binomial over
the test videos).  The same features on their OWN label (I-frame -> scene, MV statistics ->
motion) are the control that the probe can find a signal when there is one.

Shape alphabet: N videos, F features, T frames, gh / gw motion-vector grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import comb
from typing import Sequence

import numpy as np
import torch

from comode.evaluate.accuracy import top_k_accuracy
from comode.evaluate.linear import LinearProbeSpec, fit_linear_probe
from comode.store import Store, open_store

__all__ = ["ProbeResult", "iframe_features", "motion_statistics", "chance_band", "run_leakage_probes", "format_probes"]

# Thumbnail of an I-frame: (height, width) -- enough for layout, colours and object count.
THUMBNAIL = (12, 16)
# Colour histogram bins per channel.
COLOUR_BINS = 4
# Direction bins of the motion-vector histogram (45 degrees each), and magnitude bins (px).
DIRECTION_BINS = 8
MAGNITUDE_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def iframe_features(video) -> np.ndarray:
    """(F,) a still frame's look: the middle I-frame as a 12x16 RGB thumbnail and a 4x4x4
    colour histogram (both in [0, 1])."""
    frames = video.iframe_index
    image = np.asarray(video.iframes[len(frames) // 2]).astype(np.float32) / 255.0  # (H, W, 3)
    h, w, _ = image.shape
    rows = np.array_split(np.arange(h), THUMBNAIL[0])
    cols = np.array_split(np.arange(w), THUMBNAIL[1])
    thumbnail = np.array([[image[np.ix_(r, c)].mean(axis=(0, 1)) for c in cols] for r in rows])
    bins = np.minimum((image * COLOUR_BINS).astype(int), COLOUR_BINS - 1)
    codes = (bins[..., 0] * COLOUR_BINS + bins[..., 1]) * COLOUR_BINS + bins[..., 2]
    histogram = np.bincount(codes.ravel(), minlength=COLOUR_BINS**3) / codes.size
    return np.concatenate([thumbnail.ravel(), histogram]).astype(np.float32)


def motion_statistics(video, *, units_per_pixel: float) -> np.ndarray:
    """(F,) what the motion vectors alone say: a magnitude-weighted direction histogram, a
    magnitude histogram and the share of moving blocks (all over the P-frames), and the
    mean motion magnitude along the grid's rows and columns."""
    types = np.frombuffer(video.frame_types.encode(), np.uint8)
    mvs = np.asarray(video.mvs[:]).astype(np.float32)[types == ord("P")] / units_per_pixel  # (T_p, 2, gh, gw)
    if mvs.shape[0] == 0:
        mvs = np.zeros((1, *np.asarray(video.mvs[:1]).shape[1:]), np.float32)
    x, y = mvs[:, 0], mvs[:, 1]
    magnitude = np.hypot(x, y)
    moving = magnitude > 0
    angle = (np.arctan2(y, x)[moving] + math.pi) / (2 * math.pi)
    direction = np.bincount(
        np.minimum((angle * DIRECTION_BINS).astype(int), DIRECTION_BINS - 1),
        weights=magnitude[moving],
        minlength=DIRECTION_BINS,
    )
    direction /= max(direction.sum(), 1e-9)
    sizes = np.bincount(np.searchsorted(MAGNITUDE_EDGES, magnitude[moving]), minlength=len(MAGNITUDE_EDGES) + 1)
    sizes = sizes / max(sizes.sum(), 1)
    energy_rows, energy_cols = magnitude.mean(axis=(0, 2)), magnitude.mean(axis=(0, 1))
    return np.concatenate([direction, sizes, [moving.mean()], energy_rows, energy_cols]).astype(np.float32)


def chance_band(classes: int, tests: int, coverage: float = 0.95) -> tuple[float, float]:
    """(low, high) accuracy between which a guess at chance (p = 1 / classes) lands with
    probability ``coverage`` over ``tests`` test videos (exact binomial quantiles)."""

    p = 1.0 / classes
    pmf = [comb(tests, k) * p**k * (1 - p) ** (tests - k) for k in range(tests + 1)]
    cdf = np.cumsum(pmf)
    tail = (1 - coverage) / 2
    low = int(np.searchsorted(cdf, tail))
    high = int(np.searchsorted(cdf, 1 - tail))
    return low / tests, high / tests


@dataclass(frozen=True)
class ProbeResult:
    """One probe: ``signal`` features -> ``label_set`` labels, test top-1 beside chance."""

    signal: str
    label_set: str
    should_leak: bool  # True for the controls (a signal on its own label)
    top1: float
    chance: float
    band: tuple[float, float]
    tests: int

    @property
    def verdict(self) -> str:
        if self.should_leak:
            return "finds it (control)" if self.top1 > self.band[1] else "does NOT find it: the probe is too weak"
        return "at chance" if self.top1 <= self.band[1] else "LEAKS: above chance"


def _labels(store: Store, ids: Sequence[str], label_set: str) -> np.ndarray:
    return np.array(store.labels(ids, label_set), dtype=np.int64)


def _probe(
    signal: str,
    label_set: str,
    should_leak: bool,
    train_x: np.ndarray,
    test_x: np.ndarray,
    train_y: np.ndarray,
    test_y: np.ndarray,
    classes: int,
) -> ProbeResult:
    keep_train, keep_test = train_y >= 0, test_y >= 0
    layer, mean, std = fit_linear_probe(
        train_x[keep_train], train_y[keep_train], num_classes=classes, spec=LinearProbeSpec()
    )
    with torch.no_grad():
        scores = layer((torch.as_tensor(test_x[keep_test]) - mean) / std)
    top1 = float(top_k_accuracy(scores, torch.as_tensor(test_y[keep_test]), ks=(1,))["top1"])
    tests = int(keep_test.sum())
    return ProbeResult(signal, label_set, should_leak, top1, 1.0 / classes, chance_band(classes, tests), tests)


def run_leakage_probes(
    store_url: str, *, split: str = "1", motion: str = "motion", scene: str = "scene"
) -> list[ProbeResult]:
    """The two leakage probes and their two controls on ``split`` of a store with label sets
    ``motion`` and ``scene``.

    Raises:
        ValueError: the store lacks the split or one of the label sets.
    """
    store = open_store(store_url).snapshot()
    sets = store.label_sets
    missing = [name for name in (motion, scene) if name not in sets]
    if missing:
        raise ValueError(f"store {store_url} has no label set {missing[0]!r}; its label sets: {sorted(sets) or 'none'}")
    if split not in store.split_names:
        raise ValueError(f"store {store_url} has no split {split!r}; its splits: {store.split_names or 'none'}")
    units = float(store.extraction["mv_units_per_pixel"])
    ids = {side: store.video_ids(split=split, subset=side) for side in ("train", "test")}
    videos = {side: [store.video(v) for v in ids[side]] for side in ids}
    stills = {side: np.stack([iframe_features(v) for v in videos[side]]) for side in ids}
    motions = {side: np.stack([motion_statistics(v, units_per_pixel=units) for v in videos[side]]) for side in ids}
    labels = {(name, side): _labels(store, ids[side], name) for name in (motion, scene) for side in ids}
    results = []
    for signal, features, label_set, should_leak in (
        ("I-frame", stills, motion, False),
        ("MV statistics", motions, scene, False),
        ("I-frame", stills, scene, True),
        ("MV statistics", motions, motion, True),
    ):
        results.append(
            _probe(
                signal,
                label_set,
                should_leak,
                features["train"],
                features["test"],
                labels[(label_set, "train")],
                labels[(label_set, "test")],
                len(sets[label_set]),
            )
        )
    return results


def format_probes(results: Sequence[ProbeResult]) -> str:
    """A Markdown table of the probes."""
    lines = ["| signal -> labels | top-1 | chance | 95 % band of chance | verdict |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.signal} -> {r.label_set} | {100 * r.top1:.1f} | {100 * r.chance:.1f} | "
            f"{100 * r.band[0]:.1f}-{100 * r.band[1]:.1f} ({r.tests} tests) | {r.verdict} |"
        )
    return "\n".join(lines)
