"""The test clips of a store's videos as a DataLoader dataset: which frames
(:mod:`comode.data.frames`), decoded from the store in worker processes, a failed video
recorded with its reason instead of dropped.

Shape alphabet: T time, H / W height / width.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from comode.cores import check_worker_count
from comode.data.frames import WindowSpec, sliding_window_indices
from comode.store.handle import LazyStore

__all__ = ["VideoClips", "usable_batches"]


class VideoClips(Dataset):
    """The 10 test clips of each video, as raw uint8 frames (one item per video).

    Item: ``{"index": i, "clips": (clips, 3, T, H, W) uint8 tensor or None, "frames":
    (clips, T) frame numbers, "label": int, "error": str or None}``.  Opens the store lazily in each process (DataLoader workers).
    ``clip_indices`` may override the sliding window, e.g. one random clip per video for
    finetuning: a function (num_frames, index) -> (clips, T) int array.
    """

    def __init__(
        self,
        store_url: str,
        video_ids: Sequence[str],
        *,
        window: WindowSpec = WindowSpec(),
        clip_indices: Callable[[int, int], np.ndarray] | None = None,
    ) -> None:
        self.store_url, self.video_ids, self.window = store_url, list(video_ids), window
        self.clip_indices = clip_indices
        self._store = LazyStore(store_url)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video_id = self.video_ids[index]
        label = -1
        try:
            video = self._store.get().video(video_id)
            label = video.label
            if self.clip_indices is not None:
                frames = np.asarray(self.clip_indices(video.num_frames, index), dtype=np.int64)
            else:
                frames = sliding_window_indices(video.num_frames, self.window)
            unique, inverse = np.unique(frames, return_inverse=True)
            decoded = video.decode_frames(unique)  # (U, H, W, 3): one decode pass for all clips
            clips = torch.from_numpy(decoded[inverse.reshape(frames.shape)])  # (clips, T, H, W, 3)
            return {
                "index": index,
                "clips": clips.permute(0, 4, 1, 2, 3).contiguous(),
                "frames": frames,
                "label": label,
                "error": None,
            }
        except Exception as error:  # noqa: BLE001 -- any failure of one video is recorded, not fatal
            return {
                "index": index,
                "clips": None,
                "frames": None,
                "label": label,
                "error": f"{type(error).__name__}: {error}",
            }


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def usable_batches(
    dataset: VideoClips, *, batch_size: int, workers: int, failures: dict[str, str], pin_memory: bool = False
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """The items of ``dataset`` in order, batch by batch, decoded in ``workers`` processes.

    Yields (the items of the batch that decoded (possibly none), the batch's size); a video
    that failed is recorded in ``failures`` (id -> reason), never dropped silently."""
    # "forkserver": tensorstore (the store's read path) aborts a worker forked from a process
    # that already read through it, e.g. after pretraining in this process.
    loader = DataLoader(
        dataset,
        batch_size=max(1, batch_size),
        shuffle=False,
        num_workers=check_worker_count(workers, option="--workers"),
        collate_fn=_collate,
        pin_memory=pin_memory,
        multiprocessing_context="forkserver" if workers > 0 else None,
    )
    for items in loader:
        for item in items:
            if item["error"] is not None:
                failures[dataset.video_ids[item["index"]]] = item["error"]
        yield [item for item in items if item["error"] is None], len(items)
