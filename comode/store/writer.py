"""Write a comode store: the root once, then one group per video, status marker last.

Writes are idempotent: ``write_video`` replaces whatever an earlier (possibly killed) attempt
left under the same id, and only the final attribute update turns a group "complete".
Each video group is written by exactly one task, and every array of it is one shard, so
two tasks never touch the same file.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from comode.store import layout

# Blosc is a core Zarr v3 codec, so any v3 reader can decode the store; zstd inside it
# compressed MV grids ~2x better than lz4 at the same speed in our measurements.
_COMPRESS_INT = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
_COMPRESS_BYTES = BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle")
# The bitstream is already entropy-coded; lz4 at level 1 costs ~nothing and only removes
# the zero padding of the last (partial) inner chunk, which is stored at full size.
_COMPRESS_STREAM = BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle")


@dataclass(frozen=True)
class VideoArrays:
    """Everything extracted from one video (shape letters: T frames, K I-frames, N bytes).

    frame_types:         (T,) uint8, ASCII 'I'/'P'/'B'
    iframes:             (K, h, w, 3) uint8 RGB at the RGB-stream size
    iframe_index:        (K,) int32 frame numbers of the I-frames
    mvs:                 (T, 2, gh, gw) int16, quarter pixels, direction of motion (dst - src)
    rgb_stream:          (N,) uint8 elementary stream the training clips are decoded from
    rgb_stream_offsets:  (T + 1,) int64 byte offset of each frame's packet, then N
    """

    frame_types: np.ndarray
    iframes: np.ndarray
    iframe_index: np.ndarray
    mvs: np.ndarray
    rgb_stream: np.ndarray
    rgb_stream_offsets: np.ndarray

    def __post_init__(self) -> None:
        t = self.frame_types.shape[0]
        k = self.iframe_index.shape[0]
        checks = [
            (self.frame_types.dtype == np.uint8 and self.frame_types.ndim == 1, "frame_types must be uint8 (T,)"),
            (self.iframes.dtype == np.uint8 and self.iframes.ndim == 4 and self.iframes.shape[0] == k
             and self.iframes.shape[3] == 3, "iframes must be uint8 (K, h, w, 3) with K = len(iframe_index)"),
            (self.mvs.dtype == np.int16 and self.mvs.ndim == 4 and self.mvs.shape[:2] == (t, 2),
             "mvs must be int16 (T, 2, gh, gw)"),
            (self.rgb_stream.dtype == np.uint8 and self.rgb_stream.ndim == 1, "rgb_stream must be uint8 (N,)"),
            (self.rgb_stream_offsets.shape == (t + 1,) and self.rgb_stream_offsets[-1] == self.rgb_stream.size,
             "rgb_stream_offsets must be (T + 1,) ending at len(rgb_stream)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"inconsistent video arrays: {message}")

    @property
    def num_frames(self) -> int:
        return int(self.frame_types.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in layout.ARRAY_NAMES)


def create_or_open_root(url: str, *, root_attrs: Mapping[str, Any], storage_options: dict | None = None) -> zarr.Group:
    """Create the store (or reopen it for resuming) and return its root group.

    Resuming is refused when the existing store was made with different extraction
    settings: mixing two encodings in one store would silently change the data.
    """
    try:
        root = zarr.open_group(url, mode="r+", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        root = zarr.open_group(url, mode="w-", storage_options=storage_options, zarr_format=3)
        root.attrs.update(dict(root_attrs))
        root.require_group(layout.VIDEOS_GROUP)
        return root
    existing = root.attrs.asdict()
    if existing.get("schema") != root_attrs.get("schema"):
        raise ValueError(f"{url} is not a {root_attrs.get('schema')} store (schema: {existing.get('schema')!r})")
    old, new = existing.get("extraction", {}), root_attrs.get("extraction", {})
    differing = sorted(k for k in set(old) | set(new) if k != "tools" and old.get(k) != new.get(k))
    if differing:
        details = ", ".join(f"{k}: store={old.get(k)!r} now={new.get(k)!r}" for k in differing)
        raise ValueError(f"{url} was extracted with other settings ({details}); use another output store")
    # The dataset description may grow (new videos, new classes): the newest run describes
    # it.  Rewrite only on change, so that a run with nothing to do writes nothing.
    if existing.get("dataset") != root_attrs["dataset"]:
        root.attrs.update({"dataset": dict(root_attrs["dataset"])})
    root.require_group(layout.VIDEOS_GROUP)
    return root


def _video_path(video_id: str) -> str:
    if not video_id or "/" in video_id or video_id.startswith(".") or "\x00" in video_id:
        raise ValueError(f"unsafe video id {video_id!r}")
    return f"{layout.VIDEOS_GROUP}/{video_id}"


def write_video(root: zarr.Group, video_id: str, attrs: Mapping[str, Any], arrays: VideoArrays) -> None:
    """Write one video group; its status becomes "complete" only after every array is stored."""
    group = root.create_group(_video_path(video_id), overwrite=True,
                              attributes={**attrs, "status": layout.STATUS_WRITING})
    _, _, gh, gw = arrays.mvs.shape
    _, h, w, _ = arrays.iframes.shape
    specs = [
        (layout.FRAME_TYPES, arrays.frame_types, arrays.frame_types.shape, _COMPRESS_BYTES),
        (layout.IFRAME_INDEX, arrays.iframe_index.astype(np.int32), arrays.iframe_index.shape, _COMPRESS_INT),
        (layout.IFRAMES, arrays.iframes, (layout.IFRAMES_CHUNK, h, w, 3), _COMPRESS_BYTES),
        (layout.MVS, arrays.mvs, (layout.MVS_CHUNK_FRAMES, 2, gh, gw), _COMPRESS_INT),
        (layout.RGB_STREAM, arrays.rgb_stream, (layout.RGB_STREAM_CHUNK_BYTES,), _COMPRESS_STREAM),
        (layout.RGB_STREAM_OFFSETS, arrays.rgb_stream_offsets.astype(np.int64), arrays.rgb_stream_offsets.shape,
         _COMPRESS_INT),
    ]
    # All arrays in one round trip to zarr's event loop: created and written concurrently
    # (measured: 45 -> 20 ms for a 164-frame video, one by one through the sync API).
    sync(_write_arrays(group._async_group, specs))
    group.attrs.update({"status": layout.STATUS_COMPLETE})


async def _write_arrays(group, specs) -> None:
    await asyncio.gather(*(_write_array(group, name, data, chunk=chunk, compressor=compressor)
                           for name, data, chunk, compressor in specs))


def write_failure(root: zarr.Group, video_id: str, attrs: Mapping[str, Any], reason: str) -> None:
    """Record a video that could not be extracted, with its reason, and no arrays."""
    root.create_group(_video_path(video_id), overwrite=True,
                      attributes={**attrs, "status": layout.STATUS_FAILED, "error": reason})


async def _write_array(group, name: str, data: np.ndarray, *, chunk: tuple[int, ...],
                       compressor: BloscCodec) -> None:
    """One shard holding the whole array (one file), inner chunks of ``chunk`` (clipped, >= 1)."""
    shape = data.shape
    chunk = tuple(max(1, min(c, s)) if s else 1 for c, s in zip(chunk, shape))
    shard = tuple(-(-max(s, 1) // c) * c for s, c in zip(shape, chunk))
    # An array that fits one chunk needs no shard index: same single file, less work.
    array = await group.create_array(name, shape=shape, dtype=data.dtype, chunks=shard if shard == chunk else chunk,
                                     shards=None if shard == chunk else shard, compressors=compressor, fill_value=0)
    if data.size:
        await array.setitem(Ellipsis, data)
