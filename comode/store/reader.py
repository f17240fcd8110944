"""Read a comode store: the root description, the list of complete videos, and per-video data.

Only videos whose status is "complete" are listed by default: a group that is still being
written (or whose writer was killed) has missing chunks that would read back as zeros.
The list comes from the store's index (:mod:`comode.store.index`: O(1) reads whatever the
store's size); a store without a usable index is listed by reading every group, with a
warning.  Opening a video reads its own group, so a video is never read on the index's word
alone.
"""

from __future__ import annotations

import os
import posixpath
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import zarr

from comode.store import layout
from comode.store.arrays import StoredArray, open_array
from comode.store.bounded_codecs import bounded_decoding, codec_problem
from comode.store.bounds import OversizedVideo, array_problem, file_limit, frames_problem, span_problem
from comode.store.containment import UnsafeStoreEntry, check_video_id, read_problem, tree_problems
from comode.store.fields import reading_problem
from comode.store.index.listing import Listing, list_videos
from comode.store.location import filesystem, is_plain_local, join, local_path
from comode.store.motion import MotionWindow, accumulate, pixel_flow, residual
from comode.store.reach import reaching
from comode.store.rgb import decode_span
from comode.store.scan import scan_video_groups
from comode.store.schema import check_root_attrs

__all__ = ["Store", "StoreError", "Video", "MotionWindow", "open_store", "scan_video_groups", "Listing"]


class StoreError(ValueError):
    """The path is not a usable comode store (message says why and what to do)."""


def open_store(url: str, *, storage_options: dict | None = None, validate: bool = True) -> "Store":
    """Open a store read-only, checking its schema name and major version first.

    ``storage_options`` (fsspec's) reach zarr-python only: a store opened with them reads its
    arrays through zarr-python too, since tensorstore takes its S3 settings from the AWS
    environment (docs/storage.md).  A local store whose root or ``videos`` metadata is a
    FIFO or leads outside it is refused before zarr reads it (it would block or read there)."""
    if is_plain_local(url, storage_options):
        _check_local_metadata(local_path(url))
    try:
        with reaching(url, StoreError):  # no credentials, no server: one line, not a traceback
            root = zarr.open_group(url, mode="r", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as error:
        raise StoreError(
            f"{url}: no Zarr group here ({error.__class__.__name__}); extract one with `comode extract`"
        ) from None
    attrs = root.attrs.asdict()
    if validate:
        check_root_attrs(attrs, where=url)
    return Store(url=url, root=root, attrs=attrs, array_reads=not storage_options, storage_options=storage_options)


def _check_local_metadata(root: str) -> None:
    for relative in (layout.ZARR_JSON, f"{layout.VIDEOS_GROUP}/{layout.ZARR_JSON}"):
        problem = read_problem(root, os.path.join(root, relative))
        if problem is not None:
            raise StoreError(f"{root}: {relative} is {problem}; refusing to read this store")


@dataclass
class Store:
    """A comode store opened for reading."""

    url: str
    root: zarr.Group
    attrs: dict[str, Any]
    # The video listing as read by snapshot(); None = every listing call reads it anew.
    listing: Listing | None = field(default=None, repr=False)
    # Arrays through tensorstore (False: through zarr-python, see open_store).
    array_reads: bool = True
    storage_options: dict | None = field(default=None, repr=False)

    def snapshot(self) -> "Store":
        """This store with its video listing read once, for code that lists it several times.

        Every listing call (:meth:`video_attrs`, :meth:`video_ids`, iteration) of the
        returned store reuses one listing instead of reading the index again.  Videos that
        complete after the snapshot are not listed; per-video data is read as usual.
        """
        return replace(self, listing=self.read_listing())

    def read_listing(self) -> Listing:
        """The videos as listed now: from the index, or by reading every group when the index
        is missing or unusable (a log warning says so); see :mod:`comode.store.index`."""
        if self.listing is not None:
            return self.listing
        return list_videos(self.url, scan=self.scan_groups, storage_options=self.storage_options)

    def scan_groups(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """(attributes by id, unreadable reason by id) read from every group (O(videos) reads):
        what ``store validate`` and ``store reindex`` need; listings use the index."""
        return scan_video_groups(self._videos, self.storage_options)

    @property
    def dataset(self) -> dict[str, Any]:
        return self.attrs[layout.ATTR_DATASET]

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.get(layout.DATASET_CLASSES, []))

    @property
    def split_names(self) -> list[str]:
        return list(self.dataset.get(layout.DATASET_SPLIT_NAMES, []))

    @property
    def label_sets(self) -> dict[str, list[str]]:
        """Extra label sets, name -> class names (e.g. the sample set's ``motion`` and
        ``scene``); empty for stores with only the primary ``classes``."""
        return {name: list(names) for name, names in (self.dataset.get(layout.DATASET_LABEL_SETS) or {}).items()}

    def split(self, name: str) -> tuple[list[str], list[str]]:
        """(train ids, test ids) of the complete videos of split ``name``; ValueError naming
        the store's splits when it has no such split."""
        if name not in self.split_names:
            raise ValueError(f"store {self.url} has no split {name!r}; its splits: {self.split_names or 'none'}")
        attrs = self.video_attrs()  # one listing for both sides
        return _select(attrs, split=name, subset="train"), _select(attrs, split=name, subset="test")

    def label_classes(self, label_set: str | None = None) -> list[str]:
        """Class names of ``label_set`` (None: the primary labels, :attr:`classes`); ValueError
        naming the store's label sets when it has no such set."""
        if label_set is None:
            return self.classes
        if label_set not in self.label_sets:
            raise ValueError(
                f"store {self.url} has no label set {label_set!r}; its label sets: "
                f"{sorted(self.label_sets) or 'none (only the primary labels)'}"
            )
        return self.label_sets[label_set]

    def labels(self, video_ids: Sequence[str], label_set: str | None = None) -> list[int]:
        """The label of each of ``video_ids`` in ``label_set`` (None: the primary labels), an
        index into :meth:`label_classes`; -1 for a video without one.  From one listing; a
        KeyError for a video the store does not list, a ValueError for an unknown label set."""
        self.label_classes(label_set)  # the error naming the store's label sets
        attrs = self.video_attrs()
        labels = []
        for video_id in video_ids:
            if video_id not in attrs:
                raise KeyError(f"no video {video_id!r} in {self.url}")
            video = attrs[video_id]
            label = (
                video.get(layout.ATTR_LABEL)
                if label_set is None
                else (video.get(layout.ATTR_LABELS) or {}).get(label_set)
            )
            labels.append(-1 if label is None else int(label))
        return labels

    @property
    def extraction(self) -> dict[str, Any]:
        return self.attrs[layout.ATTR_EXTRACTION]

    @cached_property
    def _videos(self) -> zarr.Group:
        return self.root[layout.VIDEOS_GROUP]

    def video_attrs(self) -> dict[str, dict[str, Any]]:
        """Attributes of every readable video group, whatever its status, keyed by video id.

        From the index these are the attributes it carries (``INDEXED_ATTRS``: status,
        source, labels, splits, frames, error); ``video(id).attrs`` has all of a group's.
        A group whose metadata cannot be read (a damaged ``zarr.json``) is left out with a
        warning instead of stopping every reader: :meth:`scan_videos` says why, and
        ``comode store validate`` reports it by name."""
        attrs, unreadable = self.scan_videos()
        if unreadable:
            names = ", ".join(sorted(unreadable)[:5]) + (" ..." if len(unreadable) > 5 else "")
            warnings.warn(
                f"{self.url}: {len(unreadable)} video group(s) with unreadable metadata left out "
                f"({names}); `comode store validate` says why",
                stacklevel=2,
            )
        return attrs

    def scan_videos(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """(attributes by video id, reason by id for groups whose metadata cannot be read),
        as listed by :meth:`read_listing`.  A video whose attributes readers act on have the
        wrong type (:func:`~comode.store.fields.reading_problem`) is among the unreadable."""
        listing = self.read_listing()
        classes, label_sets = len(self.classes), {name: len(names) for name, names in self.label_sets.items()}
        videos, unreadable = {}, dict(listing.unreadable)
        for video, attrs in listing.videos.items():
            problem = reading_problem(attrs, classes=classes, label_sets=label_sets)
            if problem is None:
                videos[video] = attrs
            else:
                unreadable[video] = f"attributes of the wrong type: {problem}"
        return videos, unreadable

    def video_ids(
        self, *, status: str | None = layout.STATUS_COMPLETE, split: str | None = None, subset: str | None = None
    ) -> list[str]:
        """Sorted ids of videos with ``status`` (None: any), optionally in ``split`` as ``subset``."""
        return _select(self.video_attrs(), status=status, split=split, subset=subset)

    def video(self, video_id: str) -> "Video":
        """The group of ``video_id``.  In a local store, a group holding a link that leads
        outside the store or a non-regular file is refused (UnsafeStoreEntry, a ValueError:
        training skips and counts it like a damaged video) before anything of it is read."""
        check_video_id(video_id)
        if is_plain_local(self.url, self.storage_options):
            root = local_path(self.url)
            problems = tree_problems(root, os.path.join(root, layout.VIDEOS_GROUP, video_id))
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise UnsafeStoreEntry(f"video {video_id!r} refused: {problems[0]}{more}")
        try:
            group = self._videos[video_id]
        except KeyError:
            raise KeyError(f"no video {video_id!r} in {self.url}") from None
        url = join(self.url, layout.VIDEOS_GROUP, video_id) if self.array_reads else ""
        local = is_plain_local(self.url, self.storage_options)
        return Video(
            video_id=video_id,
            group=group,
            url=url,
            folder=os.path.join(local_path(self.url), layout.VIDEOS_GROUP, video_id) if local else None,
            list_objects=None if local else self._object_lister(video_id),
            extraction=self.extraction,
            rgb_limit=self._rgb_size(),
        )

    def _object_lister(self, video_id: str) -> Callable[[], dict[str, int]]:
        """For a remote store: a function that lists the objects of ``video_id``'s group,
        {path inside the group: bytes}, in one request (fsspec's recursive ``find``)."""

        def list_objects() -> dict[str, int]:
            fs, root = filesystem(self.url, self.storage_options)
            prefix = posixpath.join(root, layout.VIDEOS_GROUP, video_id)
            found = fs.find(prefix, detail=True)
            return {posixpath.relpath(path, prefix): int(info.get("size") or 0) for path, info in found.items()}

        return list_objects

    def _rgb_size(self) -> tuple[int, int] | None:
        """(width, height) of the store's RGB stream: no decoded frame may be larger."""
        size = tuple(self.extraction.get(key) for key in ("rgb_width", "rgb_height"))
        return size if all(isinstance(v, int) and v > 0 for v in size) else None  # type: ignore[return-value]

    def __iter__(self) -> Iterator["Video"]:
        for video_id in self.video_ids():
            yield self.video(video_id)


def _select(
    videos: dict[str, dict[str, Any]],
    *,
    status: str | None = layout.STATUS_COMPLETE,
    split: str | None = None,
    subset: str | None = None,
) -> list[str]:
    """Sorted ids of ``videos`` (attributes by id) with ``status`` (None: any), optionally in
    ``split`` as ``subset`` (:meth:`Store.video_ids`)."""
    ids = []
    for name, attrs in videos.items():
        if status is not None and attrs.get(layout.ATTR_STATUS) != status:
            continue
        if split is not None:
            membership = attrs.get(layout.ATTR_SPLITS, {}).get(split)
            if membership is None or (subset is not None and membership != subset):
                continue
        ids.append(name)
    return sorted(ids)


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
