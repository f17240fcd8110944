"""Test videos with known motion, written with comode's ffmpeg: the ground truth for
motion-vector sign and units, and small stores for the tests (not part of the package:
the built-in labelled set users generate is :mod:`comode.sampleset`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from comode.sampleset.render import encode_frames


def smooth_texture(height: int, width: int, *, seed: int = 0, blur: int = 3) -> np.ndarray:
    """(height, width, 3) uint8 random texture, box-blurred so block matching is unambiguous."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height + 2 * blur, width + 2 * blur, 3))
    kernel = np.ones(2 * blur + 1) / (2 * blur + 1)
    for axis in (0, 1):
        noise = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, noise)
    noise = noise[blur:-blur, blur:-blur]
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def translating_frames(*, frames: int, width: int, height: int, dx: int, dy: int, seed: int = 0) -> np.ndarray:
    """(frames, height, width, 3) uint8: a texture whose content moves by (dx, dy) px per frame.

    Frame t shows texture[y - t*dy, x - t*dx], so a pattern seen at x in frame t is at
    x + dx in frame t + 1: positive dx = moving right, positive dy = moving down.
    """
    margin_x, margin_y = abs(dx) * frames + 8, abs(dy) * frames + 8
    texture = smooth_texture(height + 2 * margin_y, width + 2 * margin_x, seed=seed)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        y0, x0 = margin_y - t * dy, margin_x - t * dx
        out[t] = texture[y0 : y0 + height, x0 : x0 + width]
    return out


def write_video(path: Path, frames: np.ndarray, *, fps: int = 25, codec: str = "ffv1") -> Path:
    """Encode (T, H, W, 3) RGB frames to ``path`` with ffmpeg (lossless FFV1 by default)."""
    output = ["-c:v", codec]
    if codec == "ffv1":
        output += ["-pix_fmt", "yuv444p"]
    elif codec in ("libx264", "mpeg4", "mpeg2video"):
        output += ["-pix_fmt", "yuv420p"]
    encode_frames(frames, fps, [*output, str(path)], timeout=300)
    return Path(path)
