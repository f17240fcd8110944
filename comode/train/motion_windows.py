"""Reading the motion-vector windows of a pretraining sample from the store, and what is
done to them before augmentation (I-frame interpolation, camera compensation).

Shape alphabet: N windows, W frames per window, gh / gw motion-vector grid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import zarr

from comode.store.arrays import StoredArray

__all__ = [
    "MV_COVER_READ_FRAMES",
    "IFRAME_MV",
    "CAMERA_COMPENSATION",
    "read_mv_windows",
    "start_mv_windows",
    "compensate_camera",
]

# The MV windows of a sample are read as one contiguous range when it spans at most this
# many frames (12 chunks of 32), else with one orthogonal read of the needed frames.
MV_COVER_READ_FRAMES = 384

# What the I-frame MV maps hold, and the camera-motion compensation of the targets
# (comode.train.config.DataConfig.iframe_mv / camera_compensation).
IFRAME_MV = ("zero", "interpolate")
CAMERA_COMPENSATION = ("none", "median")


def read_mv_windows(
    mvs: zarr.Array | StoredArray, frames: np.ndarray, *, fill_iframes: np.ndarray | None = None
) -> np.ndarray:
    """MV maps of ``frames`` (N, W) with one read: (N, W, 2, gh, gw), int16 as stored, or
    float32 when ``fill_iframes`` is given.

    ``fill_iframes``: the video's I-frame numbers; the maps of those frames (all zero: an
    I-frame has no motion vectors) are replaced by the mean of the maps of their neighbours
    t-1 and t+1 (the one that exists, at the video's ends), read in the same call.  Why:
    a zero map in the middle of a moving window marks where the GOP boundary falls, a cue
    that tells windows apart without saying anything about the motion.
    """
    return start_mv_windows(mvs, frames, fill_iframes=fill_iframes)()


def start_mv_windows(
    mvs: zarr.Array | StoredArray, frames: np.ndarray, *, fill_iframes: np.ndarray | None = None
) -> Callable[[], np.ndarray]:
    """Start :func:`read_mv_windows`'s read; the returned function waits for it and returns
    what :func:`read_mv_windows` does (a zarr.Array is read at once)."""
    total = mvs.shape[0]
    wanted = frames.ravel()
    if fill_iframes is not None:
        at_iframe = np.isin(frames, fill_iframes)  # (N, W): the maps to fill
        filled = frames[at_iframe]
        neighbours = np.concatenate([filled - 1, filled + 1])
        wanted = np.concatenate([wanted, neighbours[(neighbours >= 0) & (neighbours < total)]])
    first, last = int(wanted.min()), int(wanted.max())
    if last - first < MV_COVER_READ_FRAMES:
        key: slice | np.ndarray = slice(first, last + 1)
        needed = np.arange(first, last + 1)
    else:
        key = needed = np.unique(wanted)
    if isinstance(mvs, StoredArray):
        fetch = mvs.start(key).result
    else:
        block = np.asarray(mvs[key] if isinstance(key, slice) else mvs.oindex[key])
        fetch = lambda: block  # noqa: E731

    def finish() -> np.ndarray:
        block = fetch()
        out = block[np.searchsorted(needed, frames)]
        if fill_iframes is None:
            return out
        out = out.astype(np.float32)
        iframes = set(np.asarray(fill_iframes).tolist())
        for position in zip(*np.nonzero(at_iframe)):
            frame = int(frames[position])
            around = [
                block[np.searchsorted(needed, f)] for f in (frame - 1, frame + 1) if 0 <= f < total and f not in iframes
            ]
            if around:
                out[position] = np.mean(around, axis=0)
        return out

    return finish


def compensate_camera(mv: np.ndarray) -> np.ndarray:
    """(..., 2, gh, gw) MV maps minus each map's median vector (x and y separately):
    (..., 2, gh, gw) float32.  The median over the grid is the dominant motion of the
    frame -- a camera pan moves every background block alike -- so what remains is the
    motion of things relative to the background.  A static camera's median is 0 (most
    blocks still), which leaves its maps unchanged."""
    mv = np.asarray(mv, dtype=np.float32)
    return mv - np.median(mv, axis=(-2, -1), keepdims=True)
