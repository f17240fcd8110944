"""How much of a sample set's motion reaches its motion vectors: the share of P-frame
blocks that carry a vector, measured on an extracted store.  See :mod:`comode.sampleset`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from comode.store import layout, open_store


@dataclass(frozen=True)
class Coverage:
    """Share of motion-vector grid cells of P-frames that carry a non-zero vector."""

    videos: int
    p_frames: int
    blocks: int  # P-frame grid cells counted
    moving: int  # of which non-zero
    by_label: dict[str, float]  # class name -> share

    @property
    def share(self) -> float:
        return self.moving / self.blocks if self.blocks else 0.0


def mv_block_coverage(store_url: str, *, video_ids: Sequence[str] | None = None) -> Coverage:
    """Measure, on an extracted store, the share of P-frame MV grid cells (16x16 blocks of
    the MV-stream frame) whose vector is not (0, 0)."""

    store = open_store(store_url)
    ids = list(video_ids) if video_ids is not None else store.video_ids()
    p_frames = blocks = moving = 0
    per_label: dict[str, list[int]] = {}
    for video_id in ids:
        video = store.video(video_id)
        types = np.frombuffer(video.frame_types.encode(), np.uint8)
        mvs = np.asarray(video.mvs[:])  # (T, 2, gh, gw)
        p = mvs[types == ord("P")]
        nonzero = int(np.count_nonzero(np.any(p != 0, axis=1)))
        cells = int(p.shape[0] * p.shape[2] * p.shape[3])
        p_frames, blocks, moving = p_frames + p.shape[0], blocks + cells, moving + nonzero
        counts = per_label.setdefault(str(video.attrs.get(layout.ATTR_CLASS_NAME)), [0, 0])
        counts[0], counts[1] = counts[0] + nonzero, counts[1] + cells
    return Coverage(
        videos=len(ids),
        p_frames=p_frames,
        blocks=blocks,
        moving=moving,
        by_label={k: (m / b if b else 0.0) for k, (m, b) in sorted(per_label.items())},
    )
