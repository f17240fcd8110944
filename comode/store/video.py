"""One video group of a comode store, read lazily: its attributes, arrays, frames and motion.

:meth:`comode.store.reader.Store.video` opens one (the store-level listing and opening live
in :mod:`comode.store.reader`).  Every array is checked against the frame count and the
store's settings before anything of it is read (:mod:`comode.store.bounds`); frames are
decoded from the stored RGB stream (:mod:`comode.store.rgb`); motion windows and residuals
follow CoViAR's definitions (:mod:`comode.store.motion`).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import zarr

from comode.store import layout
from comode.store.arrays import StoredArray, open_array
from comode.store.bounded_codecs import bounded_decoding, codec_problem
from comode.store.bounds import OversizedVideo, array_problem, file_limit, frames_problem, span_problem
from comode.store.location import join
from comode.store.motion import MotionWindow, accumulate, pixel_flow, residual
from comode.store.rgb import decode_span

__all__ = ["Video"]


@dataclass
class Video:
    """One video group.  Arrays are read lazily; slicing reads only the chunks needed.

    Attributes come through zarr-python (``group``); arrays are read through tensorstore
    (:mod:`comode.store.arrays`), local and remote alike, or through zarr-python where
    tensorstore has no driver for the store's URL."""

    video_id: str
    group: zarr.Group
    url: str = ""  # the group's URL; "" = read arrays through zarr-python
    folder: str | None = None  # the group's folder in a local store: its files' sizes are checked
    # A remote store: lists the group's objects with their sizes (checked like a local folder's files).
    list_objects: Callable[[], dict[str, int]] | None = field(default=None, repr=False, compare=False)
    # The store's extraction settings (root attribute): the grid's cell and units.
    extraction: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    rgb_limit: tuple[int, int] | None = None  # the store's RGB size: no decoded frame is larger
    _arrays: dict[str, zarr.Array | StoredArray] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def attrs(self) -> dict[str, Any]:
        return self.group.attrs.asdict()

    @property
    def status(self) -> str:
        return self.attrs.get(layout.ATTR_STATUS, layout.STATUS_WRITING)

    @property
    def is_complete(self) -> bool:
        return self.status == layout.STATUS_COMPLETE

    @property
    def label(self) -> int:
        return int(self.attrs.get(layout.ATTR_LABEL, -1))

    @property
    def labels(self) -> dict[str, int]:
        """Label per extra label set (index into ``Store.label_sets[name]``; -1 = none)."""
        return {name: int(value) for name, value in (self.attrs.get(layout.ATTR_LABELS) or {}).items()}

    @cached_property
    def num_frames(self) -> int:
        """T, refused (OversizedVideo) when it is no count of frames or over
        ``layout.MAX_FRAMES``: readers size arrays and draws by it (:mod:`comode.store.bounds`)."""
        frames = self.attrs[layout.ATTR_FRAMES]
        problem = frames_problem(frames)
        if problem is not None:
            raise OversizedVideo(f"video {self.video_id!r}: {problem}")
        return frames

    def array(self, name: str) -> zarr.Array | StoredArray:
        """The array ``name`` (one of ``layout.ARRAY_NAMES``) for reading; lazy like ``mvs``."""
        return self._array(name)

    def _array(self, name: str) -> zarr.Array | StoredArray:
        # Opening an array reads its metadata: keep the handle for the next call.
        array = self._arrays.get(name)
        if array is None:
            if not self.is_complete:
                raise ValueError(f"video {self.video_id!r} is not complete (status {self.status!r})")
            array = open_array(join(self.url, name)) if self.url else None
            if array is None:  # through zarr-python: its compressors bounded like tensorstore's
                with bounded_decoding():
                    array = self.group[name]
            problem = self.array_problem(name, array)
            if problem is not None:  # before anything of it is read (comode.store.bounds)
                raise OversizedVideo(f"video {self.video_id!r}: {problem}")
            self._arrays[name] = array
        return array

    def array_problem(self, name: str, array: zarr.Array | StoredArray) -> str | None:
        """Why ``array`` (the opened array ``name`` of this video) must not be read: its
        dtype, shape or chunks are not what the frame count and the store's settings give,
        (read through zarr-python) it uses a codec other than the Zarr v3 core ones, or (a
        local store) one of its files is larger than its chunks may take."""
        return (
            array_problem(
                name,
                dtype=array.dtype,
                shape=array.shape,
                chunks=array.chunks,
                shards=array.shards,
                frames=self.num_frames,
                extraction=self.extraction,
            )
            or (codec_problem(name, array) if isinstance(array, zarr.Array) else None)
            or self._file_problem(name, array)
        )

    def _file_problem(self, name: str, array: zarr.Array | StoredArray) -> str | None:
        """A file (local store) or object (remote store) of the array ``name`` larger than
        its chunks may take (:func:`~comode.store.bounds.file_limit`): readers read a
        chunk's file or object whole, so its size is what a read allocates."""
        limit = file_limit(dtype=array.dtype, chunks=array.chunks, shards=array.shards)
        for relative, size in self._file_sizes(name):
            if posixpath.basename(relative) != layout.ZARR_JSON and size > limit:
                return f"{relative} is {size} bytes, more than the {limit} its chunks may take"
        return None

    def _file_sizes(self, name: str) -> Iterator[tuple[str, int]]:
        """(path inside the group, bytes) of every file or object of the array ``name``."""
        if self.folder is not None:
            for directory, _, files in os.walk(os.path.join(self.folder, name)):
                for file in files:
                    path = os.path.join(directory, file)
                    yield os.path.relpath(path, self.folder).replace(os.sep, "/"), os.lstat(path).st_size
        elif self.list_objects is not None:
            yield from ((path, size) for path, size in self._objects.items() if path.startswith(name + "/"))

    @cached_property
    def _objects(self) -> dict[str, int]:
        """The remote group's objects and their sizes: listed once per Video."""
        return self.list_objects()

    @cached_property
    def frame_types(self) -> str:
        """Frame types as a string, e.g. 'IPPPPPPPPPPPIPP...'."""
        return self._array(layout.FRAME_TYPES)[...].tobytes().decode("ascii")

    @cached_property
    def iframe_index(self) -> np.ndarray:
        """(K,) int32 frame numbers of the I-frames."""
        return self._array(layout.IFRAME_INDEX)[...]

    @property
    def iframes(self) -> zarr.Array | StoredArray:
        """(K, h, w, 3) uint8 RGB I-frames, lazy: indexing reads (``[k]``, ``[a:b]``, ``[...]``,
        ``.oindex[ks]``).  A StoredArray (tensorstore; ``video.group["iframes"]`` is the
        zarr.Array of the same files)."""
        return self._array(layout.IFRAMES)

    @property
    def mvs(self) -> zarr.Array | StoredArray:
        """(T, 2, gh, gw) int16 motion vectors in quarter pixels, lazy like ``iframes``."""
        return self._array(layout.MVS)

    @cached_property
    def rgb_stream_offsets(self) -> np.ndarray:
        """(T + 1,) int64 byte offsets of each frame's packet in ``rgb_stream``."""
        return self._array(layout.RGB_STREAM_OFFSETS)[...]

    def read_rgb_stream(self) -> bytes:
        """The whole stored elementary stream (write it to a .m2v file to play it)."""
        return self._array(layout.RGB_STREAM)[...].tobytes()

    def decode_frames(self, indices: Sequence[int], *, size: tuple[int, int] | None = None) -> np.ndarray:
        """Decode frames ``indices`` (any order) from the stored stream: (n, h, w, 3) uint8 RGB.

        Reads only the bytes from the I-frame preceding min(indices) to max(indices).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise ValueError("no frame indices given")
        if indices.min() < 0 or indices.max() >= self.num_frames:
            raise IndexError(f"frame indices must be in [0, {self.num_frames}), got {indices.min()}..{indices.max()}")
        iframe_index = self.iframe_index
        first = int(iframe_index[np.searchsorted(iframe_index, indices.min(), side="right") - 1])
        last = int(indices.max())
        offsets = self.rgb_stream_offsets
        start, stop = int(offsets[first]), int(offsets[last + 1])
        stream = self._array(layout.RGB_STREAM)
        problem = span_problem(start, stop, last + 1 - first, stream.shape[0], self.extraction)
        if problem is not None:  # the span is read whole: its size comes from the store
            raise OversizedVideo(f"video {self.video_id!r}: {problem}")
        span = stream[start:stop]
        codec = self.attrs.get(layout.ATTR_RGB_CODEC, layout.RGB_CODEC)
        order = np.argsort(indices, kind="stable")
        decoded = decode_span(
            span,
            offsets[first : last + 2] - start,
            (indices[order] - first).tolist(),
            codec=codec,
            size=size,
            limit=self.rgb_limit,
        )
        out = np.empty_like(decoded)
        out[order] = decoded
        return out

    # The reading API for other projects (docs/store.md, "Reading it"), stable under the
    # schema's major version: frames, I-frames and frame types above; motion below.

    @property
    def mv_valid(self) -> zarr.Array | StoredArray | None:
        """(T, gh, gw) uint8, 1 where ``mvs`` holds a vector, 0 where the cell has none
        (I-frame, intra block); lazy.  None for a group written before it (schema_minor 4)."""
        return self._array(layout.MV_VALID) if layout.MV_VALID in self._present else None

    @cached_property
    def _present(self) -> set[str]:
        return set(self.group.array_keys())

    def motion(self, start: int, stop: int) -> MotionWindow:
        """Vectors of frames ``start:stop`` in pixels of the MV frame, with the no-vector mask."""
        start, stop = self._frame_range(start, stop)
        units = float(self.extraction.get("mv_units_per_pixel", layout.MV_UNITS_PER_PIXEL))
        pixels = np.asarray(self.mvs[start:stop], dtype=np.float32) / units
        valid = self.mv_valid
        return MotionWindow(start, pixels, None if valid is None else np.asarray(valid[start:stop]).astype(bool))

    def accumulated_motion(self, start: int, stop: int) -> MotionWindow:
        """Vectors of frames ``start:stop`` accumulated back to each frame's last I-frame, in
        pixels of the MV frame (:func:`comode.store.motion.accumulate`); the mask is True
        where the cell had a vector at every step back."""
        start, stop = self._frame_range(start, stop)
        first = self._gop_start(start)
        window = self.motion(first, stop)
        is_iframe = np.frombuffer(self.frame_types[first:stop].encode("ascii"), np.uint8) == ord("I")
        pixels, valid = accumulate(window.pixels, is_iframe, cell=self._cell, valid=window.valid)
        return MotionWindow(start, pixels[start - first :], None if valid is None else valid[start - first :])

    def residuals(self, indices: Sequence[int], *, accumulated: bool = False) -> np.ndarray:
        """(n, h, w, 3) int16 residuals of frames ``indices`` at the RGB stream's size.

        Frame t minus frame t-1 moved by t's vectors (CoViAR's residual); ``accumulated``:
        frame t minus its GOP's I-frame moved by the accumulated vectors.  Zero for an
        I-frame.  See :mod:`comode.store.motion`."""
        indices = [int(t) for t in indices]
        frames_needed = sorted(set(indices) | {self._reference(t, accumulated) for t in indices})
        decoded = dict(zip(frames_needed, self.decode_frames(frames_needed)))
        out = []
        for t in indices:
            frame = decoded[t]
            if self.frame_types[t] == "I":
                out.append(np.zeros(frame.shape, dtype=np.int16))
                continue
            window = self.accumulated_motion(t, t + 1) if accumulated else self.motion(t, t + 1)
            flow = pixel_flow(
                window.pixels[0],
                cell=self._cell,
                mv_size=(int(self.attrs["width"]), int(self.attrs["height"])),
                size=(frame.shape[1], frame.shape[0]),
            )
            out.append(residual(frame, decoded[self._reference(t, accumulated)], flow))
        return np.stack(out)

    @property
    def _cell(self) -> int:
        return int(self.extraction["mv_cell"])

    def _reference(self, t: int, accumulated: bool) -> int:
        """The frame frame ``t``'s residual is taken against (itself for an I-frame)."""
        if self.frame_types[t] == "I":
            return t
        return self._gop_start(t) if accumulated else t - 1

    def _gop_start(self, t: int) -> int:
        """The last I-frame at or before ``t``."""
        return int(self.iframe_index[np.searchsorted(self.iframe_index, t, side="right") - 1])

    def _frame_range(self, start: int, stop: int) -> tuple[int, int]:
        if not 0 <= start < stop <= self.num_frames:
            raise IndexError(f"frames {start}:{stop} out of [0, {self.num_frames})")
        return start, stop
