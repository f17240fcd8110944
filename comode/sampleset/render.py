"""Rendering the sample set's clips: a scene's view, the textured objects moving on it,
and the lossless H.264 file.  See :mod:`comode.sampleset`."""

from __future__ import annotations

import math
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from comode.extract.encode import ffmpeg_exe
from comode.sampleset.assets import scene_photo, texture_photo
from comode.sampleset.motion import max_scale, object_centre
from comode.sampleset.spec import ClipPlan, ObjectSpec


def render_background(clip: ClipPlan, t: int) -> Image.Image:
    """Frame ``t`` of the background: the view of the panning camera, RGB (H, W)."""
    s = clip.camera_scale
    cx = clip.camera_start[0] + clip.camera_velocity[0] * t
    cy = clip.camera_start[1] + clip.camera_velocity[1] * t
    # Output pixel (u, v) samples the photo at (cx + (u - W/2) s, cy + (v - H/2) s).
    coefficients = (s, 0.0, cx - clip.width / 2 * s, 0.0, s, cy - clip.height / 2 * s)
    return scene_photo(clip.scene).transform(
        (clip.width, clip.height), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )


def make_sprite(obj: ObjectSpec, largest: float) -> Image.Image:
    """The object drawn at its largest size: RGBA, textured and tinted, alpha = its shape
    (anti-aliased).  The colour is defined everywhere, so bilinear sampling at the edge
    blends texture into transparency, not into black."""
    rw, rh = obj.radius * largest, obj.radius * largest * obj.aspect
    size = (max(4, int(math.ceil(2 * rw)) + 2), max(4, int(math.ceil(2 * rh)) + 2))
    grey = _texture_crop(obj, size)  # (h, w) in [0, 1]
    dark, light = np.array(obj.dark, np.float32), np.array(obj.light, np.float32)
    rgb = (dark + grey[..., None] * (light - dark)).round().astype(np.uint8)  # (h, w, 3)
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


def render_clip(clip: ClipPlan) -> np.ndarray:
    """Every frame of a clip: (T, H, W, 3) uint8 RGB.  Deterministic (Pillow's resampling)."""
    largest = [max_scale(clip, obj) for obj in clip.objects]
    sprites = [make_sprite(obj, top) for obj, top in zip(clip.objects, largest)]
    out = np.empty((clip.frames, clip.height, clip.width, 3), dtype=np.uint8)
    for t in range(clip.frames):
        frame = render_background(clip, t).convert("RGBA")
        for obj, sprite, top in zip(clip.objects, sprites, largest):
            x, y, scale = object_centre(clip, obj, t)
            k = top / scale  # sprite pixels per frame pixel
            # Output pixel (u, v) samples the sprite at ((u - x) k + w/2, (v - y) k + h/2).
            coefficients = (k, 0.0, sprite.width / 2 - x * k, 0.0, k, sprite.height / 2 - y * k)
            layer = sprite.transform(
                (clip.width, clip.height),
                Image.Transform.AFFINE,
                coefficients,
                resample=Image.Resampling.BILINEAR,
                fillcolor=(0, 0, 0, 0),
            )
            frame.alpha_composite(layer)
        out[t] = np.asarray(frame.convert("RGB"))
    return out


@lru_cache(maxsize=None)
def video_encoder() -> tuple[str, ...]:
    """ffmpeg encoder options for the clips: lossless x264 (CRF 0) when the binary has it, else
    MPEG-4 Part 2 at its finest quantiser.  Lossless, so that what moves in a clip is only
    what the generator moved: a lossy source flickers on the static background's grain, and
    block matching would read the flicker as motion (~4x the bytes of CRF 16, ~50 MB for
    the default set)."""
    listing = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
    ).stdout
    if " libx264 " in listing:
        return ("-c:v", "libx264", "-preset", "veryfast", "-crf", "0", "-threads", "1")
    return ("-c:v", "mpeg4", "-q:v", "2", "-threads", "1")


def encode_frames(frames: np.ndarray, fps: int, output: list[str], *, timeout: float) -> None:
    """Pipe (T, H, W, 3) uint8 RGB frames into ffmpeg, which writes them with ``output``
    (encoder options, then the file name); a failure raises RuntimeError with ffmpeg's own
    error lines."""
    _, h, w, _ = frames.shape
    raw_input = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *raw_input, *output]
    result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, timeout=timeout)
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}: {error}")


def write_clip(path: Path, frames: np.ndarray, *, fps: int) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames to an MP4 at ``path`` (written to a temporary
    name first, so a killed run leaves no truncated video under the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.mp4")
    reproducible = ["-fflags", "+bitexact", "-map_metadata", "-1"]
    encode_frames(frames, fps, [*video_encoder(), "-pix_fmt", "yuv420p", *reproducible, str(partial)], timeout=600)
    os.replace(partial, path)
    return path
