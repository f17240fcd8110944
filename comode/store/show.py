"""A picture of a video's I-frames with its motion vectors drawn on top, to check by eye.

Each panel shows one I-frame (upscaled to the MV-stream size) and, as arrows from each
grid cell, the motion summed over the P-frames of the GOP that follows it, i.e. where each
block moves during the next ``gop - 1`` frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from comode.store.reader import Store


def render_motion_picture(
    store: Store, video_id: str, out: Path, *, panels: int = 4, min_length_px: float = 1.0
) -> Path:
    """Write a PNG with up to ``panels`` I-frames side by side, arrows in red."""
    video = store.video(video_id)
    settings = store.extraction
    width, height, cell = settings["width"], settings["height"], settings["mv_cell"]
    units = settings["mv_units_per_pixel"]
    iframe_index = video.iframe_index
    picks = np.linspace(0, len(iframe_index) - 1, num=min(panels, len(iframe_index))).round().astype(int)
    tiles = []
    for k in np.unique(picks):
        start = int(iframe_index[k])
        stop = int(iframe_index[k + 1]) if k + 1 < len(iframe_index) else video.num_frames
        motion = video.mvs[start:stop].astype(np.float64).sum(axis=0) / units  # (2, gh, gw) pixels
        image = Image.fromarray(video.iframes[k]).resize((width, height), Image.BILINEAR)
        _draw_arrows(ImageDraw.Draw(image), motion, cell=cell, min_length=min_length_px)
        ImageDraw.Draw(image).text((4, 4), f"frame {start} (+{stop - start - 1} P)", fill=(255, 255, 0))
        tiles.append(image)
    canvas = Image.new("RGB", (width * len(tiles), height + 18), (0, 0, 0))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, (i * width, 0))
    ImageDraw.Draw(canvas).text(
        (4, height + 3), f"{video_id}: motion over each GOP, arrows in pixels", fill=(255, 255, 255)
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def _draw_arrows(draw: ImageDraw.ImageDraw, motion: np.ndarray, *, cell: int, min_length: float) -> None:
    _, gh, gw = motion.shape
    for gy in range(gh):
        for gx in range(gw):
            dx, dy = motion[0, gy, gx], motion[1, gy, gx]
            if np.hypot(dx, dy) < min_length:
                continue
            x0, y0 = gx * cell + cell / 2, gy * cell + cell / 2
            x1, y1 = x0 + dx, y0 + dy
            draw.line((x0, y0, x1, y1), fill=(255, 40, 40), width=1)
            # Arrow head: two short strokes back from the tip.
            angle = np.arctan2(dy, dx)
            for side in (-0.5, 0.5):
                draw.line((x1, y1, x1 - 4 * np.cos(angle + side), y1 - 4 * np.sin(angle + side)), fill=(255, 40, 40))
            draw.point((x0, y0), fill=(255, 255, 0))
