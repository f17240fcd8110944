"""A picture of retrieval results: each row a query video and its top-5 gallery videos.

Every thumbnail is the video's middle I-frame (read from the store, no decoding), with the
class name under it.  The query has a white frame; a neighbour of the query's class a
green one, another class a red one.  Queries are spread evenly over the query list
(deterministic), so re-running shows the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from comode.store import open_store

__all__ = ["render_retrieval_picture"]

THUMB_W, THUMB_H = 170, 128
CAPTION_H, BORDER, GAP = 16, 3, 12
WHITE, GREEN, RED, BLACK = (255, 255, 255), (40, 200, 60), (230, 40, 40), (0, 0, 0)


def _thumbnail(store, video_id: str) -> Image.Image:
    video = store.video(video_id)
    k = len(video.iframe_index) // 2
    return Image.fromarray(np.asarray(video.iframes[k])).resize((THUMB_W, THUMB_H), Image.BILINEAR)


def _class_name(classes: Sequence[str], label: int) -> str:
    return classes[label] if 0 <= label < len(classes) else f"label {label}"


def render_retrieval_picture(
    store_url: str,
    *,
    query_ids: Sequence[str],
    gallery_ids: Sequence[str],
    neighbours: np.ndarray,
    hits: np.ndarray,
    classes: Sequence[str],
    query_labels: Sequence[int],
    gallery_labels: Sequence[int],
    out: str | Path,
    queries: int = 4,
    top: int = 5,
) -> Path:
    """Write a PNG with ``queries`` rows of (query, its ``top`` nearest gallery videos).

    Args:
        neighbours: (N, >= top) gallery indices per query, nearest first.
        hits: (N, >= top) bool, whether each neighbour has the query's class.
    """
    store = open_store(store_url, validate=False)
    rows = np.unique(np.linspace(0, len(query_ids) - 1, num=min(queries, len(query_ids))).round().astype(int))
    top = min(top, neighbours.shape[1])
    cell_w, cell_h = THUMB_W + 2 * BORDER, THUMB_H + 2 * BORDER + CAPTION_H
    width = cell_w * (1 + top) + GAP
    canvas = Image.new("RGB", (width, cell_h * len(rows) + 20), BLACK)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), "query | top-%d neighbours (green: same class, red: other class)" % top, fill=WHITE)
    for r, q in enumerate(rows):
        y = 20 + r * cell_h
        cells = [(query_ids[q], _class_name(classes, int(query_labels[q])), WHITE)]
        for j in range(top):
            g = int(neighbours[q, j])
            cells.append((gallery_ids[g], _class_name(classes, int(gallery_labels[g])), GREEN if hits[q, j] else RED))
        for c, (video_id, name, colour) in enumerate(cells):
            x = c * cell_w + (GAP if c > 0 else 0)
            draw.rectangle((x, y, x + cell_w - 1, y + THUMB_H + 2 * BORDER - 1), fill=colour)
            canvas.paste(_thumbnail(store, video_id), (x + BORDER, y + BORDER))
            draw.text((x + BORDER, y + THUMB_H + 2 * BORDER + 2), name[:26], fill=colour)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
