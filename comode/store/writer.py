"""Write a comode store: the root once, then one group per video, status marker last.

Writes are idempotent: ``write_video`` replaces whatever an earlier (possibly killed) attempt
left under the same id, and only the final attribute update turns a group "complete".
Each video group is written by exactly one task, and every array of it is one shard, so
two tasks never touch the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from comode.store import layout

# Blosc is a core Zarr v3 codec, so any v3 reader can decode the store; zstd inside it
# compressed MV grids ~2x better than lz4 at the same speed in our measurements.
_COMPRESS_INT = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
_COMPRESS_BYTES = BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle")


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
    t, _, gh, gw = arrays.mvs.shape
    _, h, w, _ = arrays.iframes.shape
    _write_array(group, layout.FRAME_TYPES, arrays.frame_types, chunk=arrays.frame_types.shape,
                 compressor=_COMPRESS_BYTES)
    _write_array(group, layout.IFRAME_INDEX, arrays.iframe_index.astype(np.int32),
                 chunk=arrays.iframe_index.shape, compressor=_COMPRESS_INT)
    _write_array(group, layout.IFRAMES, arrays.iframes, chunk=(layout.IFRAMES_CHUNK, h, w, 3),
                 compressor=_COMPRESS_BYTES)
    _write_array(group, layout.MVS, arrays.mvs, chunk=(layout.MVS_CHUNK_FRAMES, 2, gh, gw),
                 compressor=_COMPRESS_INT)
    # The bitstream is already entropy-coded: compressing it again costs time and saves nothing.
    _write_array(group, layout.RGB_STREAM, arrays.rgb_stream, chunk=(layout.RGB_STREAM_CHUNK_BYTES,),
                 compressor=None)
    _write_array(group, layout.RGB_STREAM_OFFSETS, arrays.rgb_stream_offsets.astype(np.int64),
                 chunk=arrays.rgb_stream_offsets.shape, compressor=_COMPRESS_INT)
    group.attrs.update({"status": layout.STATUS_COMPLETE})


def write_failure(root: zarr.Group, video_id: str, attrs: Mapping[str, Any], reason: str) -> None:
    """Record a video that could not be extracted, with its reason, and no arrays."""
    root.create_group(_video_path(video_id), overwrite=True,
                      attributes={**attrs, "status": layout.STATUS_FAILED, "error": reason})


def _write_array(group: zarr.Group, name: str, data: np.ndarray, *, chunk: tuple[int, ...], compressor) -> None:
    """One shard holding the whole array (one file), inner chunks of ``chunk`` (clipped, >= 1)."""
    shape = data.shape
    chunk = tuple(max(1, min(c, s)) if s else 1 for c, s in zip(chunk, shape))
    shard = tuple(-(-max(s, 1) // c) * c for s, c in zip(shape, chunk))
    array = group.create_array(
        name, shape=shape, dtype=data.dtype, chunks=chunk, shards=shard,
        compressors=compressor if compressor is not None else None, fill_value=0,
    )
    if data.size:
        array[...] = data
