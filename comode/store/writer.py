"""Write a comode store: the root once, then one group per video, status marker last.

Writes are idempotent: ``write_video`` replaces whatever an earlier (possibly killed) attempt
left under the same id, and only the group's last write (its ``zarr.json`` with status
"complete") turns it complete.
Each video group is written by exactly one task, and every array of it is one shard, so
two tasks never touch the same file.  Every write has a fresh ``write_id`` (a group
attribute) and is announced in the writing process's index journal before the group is
touched, and recorded there after its marker is durable (:mod:`comode.store.index`).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zarr

from comode.store import layout
from comode.store.claims import claimed
from comode.store.containment import check_video_id
from comode.store.index.files import index_files
from comode.store.index.journal import journal_for, new_write_id
from comode.store.index.state import Marker
from comode.store.location import is_plain_local, local_path
from comode.store.ownership import made_by_dead_local_process, process_tag
from comode.store.reach import reaching
from comode.store.sinks import LocalSink, ObjectSink, sink_for
from comode.store.zarr_files import BloscSettings, array_files, group_metadata

# Blosc is a core Zarr v3 codec, so any v3 reader can decode the store; zstd inside it
# compressed MV grids better than lz4 at the same speed in our measurements.  Level 1, not
# 5: decoded I-frames are most of the store and compress poorly at any level; level 1 costs
# a few percent more bytes for several times less compression time (docs/performance.md).
_COMPRESS_INT = BloscSettings(cname="zstd", clevel=1, shuffle="shuffle")
_COMPRESS_BYTES = BloscSettings(cname="zstd", clevel=1, shuffle="noshuffle")
# The no-vector mask holds only 0 and 1: bit-shuffled it stored 9.7 bytes a frame on the
# shared real clips, against 12.4 byte-wise (schemas/README.md).
_COMPRESS_MASK = BloscSettings(cname="zstd", clevel=1, shuffle="bitshuffle")
# The bitstream is already entropy-coded; lz4 at level 1 costs ~nothing and only removes
# the zero padding of the last (partial) inner chunk, which is stored at full size.
_COMPRESS_STREAM = BloscSettings(cname="lz4", clevel=1, shuffle="noshuffle")
# Every chunk also carries a CRC32C (core Zarr v3 codec, comode.store.zarr_files adds it after
# compression): a damaged chunk file fails to read with a checksum error (a ValueError the
# training loader skips and counts) instead of decompressing to garbage or crashing Blosc
# (lz4 and Blosc carry no checksum of their own).  Cost: 4 bytes per chunk.


# errno values that mean "the store's file system takes no more bytes": not the video's fault,
# and every following write would fail the same way.
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class StoreFullError(ValueError):
    """The store's file system refused a write: no space left, quota exceeded or file size limit.

    Raised instead of recording the video as failed (the video is fine; the run must stop).
    The store stays valid: the interrupted group never reached status "complete", and a
    re-run after freeing space redoes it.  A ValueError so that the CLI reports the message
    (not a traceback).
    """


def is_store_full(error: BaseException) -> bool:
    """True for an OSError that means the file system is full (ENOSPC, EDQUOT, EFBIG)."""
    return isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNOS


def store_full_error(error: OSError, video_id: str) -> StoreFullError:
    return StoreFullError(
        f"cannot write to the store while writing video {video_id!r}: {error.strerror or error} "
        f"(errno {errno.errorcode.get(error.errno, error.errno)}). The store is still valid: that video is not "
        "marked complete. Free space (or raise the quota / file size limit) and run the same command again "
        "to resume."
    )


@dataclass(frozen=True)
class VideoArrays:
    """Everything extracted from one video (shape letters: T frames, K I-frames, N bytes).

    frame_types:         (T,) uint8, ASCII 'I'/'P'/'B'
    iframes:             (K, h, w, 3) uint8 RGB at the RGB-stream size
    iframe_index:        (K,) int32 frame numbers of the I-frames
    mvs:                 (T, 2, gh, gw) int16, quarter pixels, direction of motion (dst - src)
    rgb_stream:          (N,) uint8 elementary stream the training clips are decoded from
    rgb_stream_offsets:  (T + 1,) int64 byte offset of each frame's packet, then N
    timestamps:          (T,) int64 source presentation time of each frame in ticks of the
                         group's ``time_base`` attribute; optional (None: not written)
    mv_valid:            (T, gh, gw) uint8, 1 where ``mvs`` holds a vector, 0 where the cell
                         has none (I-frame, intra block), so that a 0 in ``mvs`` reads as
                         "no motion" only where this is 1; optional (None: not written)
    """

    frame_types: np.ndarray
    iframes: np.ndarray
    iframe_index: np.ndarray
    mvs: np.ndarray
    rgb_stream: np.ndarray
    rgb_stream_offsets: np.ndarray
    timestamps: np.ndarray | None = None
    mv_valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = self.frame_types.shape[0]
        k = self.iframe_index.shape[0]
        checks = [
            (self.frame_types.dtype == np.uint8 and self.frame_types.ndim == 1, "frame_types must be uint8 (T,)"),
            (
                self.iframes.dtype == np.uint8
                and self.iframes.ndim == 4
                and self.iframes.shape[0] == k
                and self.iframes.shape[3] == 3,
                "iframes must be uint8 (K, h, w, 3) with K = len(iframe_index)",
            ),
            (
                self.mvs.dtype == np.int16 and self.mvs.ndim == 4 and self.mvs.shape[:2] == (t, 2),
                "mvs must be int16 (T, 2, gh, gw)",
            ),
            (self.rgb_stream.dtype == np.uint8 and self.rgb_stream.ndim == 1, "rgb_stream must be uint8 (N,)"),
            (
                self.rgb_stream_offsets.shape == (t + 1,) and self.rgb_stream_offsets[-1] == self.rgb_stream.size,
                "rgb_stream_offsets must be (T + 1,) ending at len(rgb_stream)",
            ),
            (
                self.timestamps is None or (self.timestamps.dtype == np.int64 and self.timestamps.shape == (t,)),
                "timestamps must be int64 (T,)",
            ),
            (
                self.mv_valid is None
                or (self.mv_valid.dtype == np.uint8 and self.mv_valid.shape == (t, *self.mvs.shape[2:])),
                "mv_valid must be uint8 (T, gh, gw)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"inconsistent video arrays: {message}")

    @property
    def num_frames(self) -> int:
        return int(self.frame_types.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(
            getattr(self, name).nbytes
            for name in layout.ARRAY_NAMES + layout.OPTIONAL_ARRAY_NAMES
            if getattr(self, name) is not None
        )


@dataclass(frozen=True)
class WritableStore:
    """Where the tasks of a run write their video groups: the store's URL (and fsspec options
    for a remote one).  Cheap to make and to send to a Dask worker."""

    url: str
    storage_options: dict | None = None

    def sink(self) -> LocalSink | ObjectSink:
        return sink_for(self.url, self.storage_options)

    def group_marker(self, video_id: str) -> Marker | None:
        """What the group of ``video_id`` says now (None: no group): one small read."""
        return index_files(self.url, self.storage_options).read_markers([video_id])[video_id]


def open_root_for_writing(url: str, storage_options: dict | None = None) -> WritableStore:
    """The store the tasks that write video groups write to (it must exist already)."""
    return WritableStore(url, storage_options)


def _writable(root: WritableStore) -> WritableStore:
    """``root`` itself, refused when it is anything else: a zarr.Group of the root would lose
    the store's fsspec options (its URL can be rebuilt, its ``storage_options`` cannot)."""
    if not isinstance(root, WritableStore):
        raise TypeError(
            f"the writers take the store from open_root_for_writing(url, storage_options), not a {type(root).__name__}"
        )
    return root


def _remove_interrupted_metadata_writes(url: str) -> int:
    """Remove ``zarr.<uuid>.partial`` files of killed metadata writes in the root and ``videos/``.

    Called by the run's client before any task starts: no writer of ours is then busy at
    these two levels (video groups below are replaced whole when redone)."""
    removed = 0
    for folder in (url, os.path.join(url, layout.VIDEOS_GROUP)):
        for leftover in glob.glob(os.path.join(glob.escape(folder), "zarr.*.partial")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
                removed += 1
    return removed


def create_or_open_root(url: str, *, root_attrs: Mapping[str, Any], storage_options: dict | None = None) -> zarr.Group:
    """Create the store (or reopen it for resuming) and return its root group.

    Resuming is refused when the existing store was made with different extraction
    settings: mixing two encodings in one store would silently change the data.
    """
    made_by_another_run = False
    try:
        with reaching(url):  # no credentials, no server: one line (a ValueError), not a traceback
            root = zarr.open_group(url, mode="r+", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        root = _create_root(url, root_attrs=root_attrs, storage_options=storage_options)
        if root is not None:
            return root
        made_by_another_run = True
        try:  # another run made it first, or the path is a folder holding something else
            root = zarr.open_group(url, mode="r+", storage_options=storage_options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise ValueError(f"{url} exists and is not a Zarr store; choose another output store") from None
    existing = root.attrs.asdict()
    if existing.get(layout.ATTR_SCHEMA) != root_attrs.get(layout.ATTR_SCHEMA):
        raise ValueError(
            f"{url} is not a {root_attrs.get(layout.ATTR_SCHEMA)} store (schema: {existing.get(layout.ATTR_SCHEMA)!r})"
        )
    old, new = existing.get(layout.ATTR_EXTRACTION, {}), root_attrs.get(layout.ATTR_EXTRACTION, {})
    differing = sorted(k for k in set(old) | set(new) if k != "tools" and old.get(k) != new.get(k))
    if differing:
        details = ", ".join(f"{k}: store={old.get(k)!r} now={new.get(k)!r}" for k in differing)
        raise ValueError(f"{url} was extracted with other settings ({details}); use another output store")
    # The dataset description may grow (new videos, new classes): the newest run describes
    # it.  Rewrite only on change, so that a run with nothing to do writes nothing.
    if existing.get(layout.ATTR_DATASET) != root_attrs[layout.ATTR_DATASET]:
        root.attrs.update({layout.ATTR_DATASET: dict(root_attrs[layout.ATTR_DATASET])})
    root.require_group(layout.VIDEOS_GROUP)
    if is_plain_local(url, storage_options) and not made_by_another_run:  # that run may be writing its metadata now
        _remove_interrupted_metadata_writes(local_path(url))
    return root


def _create_root(url: str, *, root_attrs: Mapping[str, Any], storage_options: dict | None) -> zarr.Group | None:
    """Create a new store so that nobody ever sees it half made.

    A local store is built in a sibling temporary folder and renamed into place: a reader
    (or a killed-and-restarted run) finds either no store or a root with all its attributes
    and its ``videos`` group.  (Created in two steps, a kill between them left a root without
    attributes that every later run refused as "not a comode store".)  Other fsspec URLs
    have no atomic rename: the root is written with its attributes in one write, then
    ``videos`` (which a resumed run re-creates if missing).  Returns None when another run
    created the store first.
    """
    if is_plain_local(url, storage_options):
        target = os.path.abspath(url)
        building = f"{target}.creating-{process_tag()}-{uuid.uuid4().hex[:8]}"
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        _remove_dead_staging_folders(target)
        try:
            staged = zarr.open_group(building, mode="w-", zarr_format=3, attributes=dict(root_attrs))
            staged.require_group(layout.VIDEOS_GROUP)
            index_files(building).ensure_group()  # made with the store: writers never touch the root folder
            sink = LocalSink(building)
            sink.sync_tree(building)  # on disk before any video's marker can be
            try:
                os.rename(building, target)  # atomic; fails if another run created the store first
            except OSError as error:
                if not os.path.isdir(target) or error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                return None  # the caller opens (and checks) the other run's store
        finally:
            shutil.rmtree(building, ignore_errors=True)
        LocalSink(target).sync_dir(os.path.dirname(target))  # the rename
        return zarr.open_group(target, mode="r+")
    root = zarr.open_group(url, mode="w-", storage_options=storage_options, zarr_format=3, attributes=dict(root_attrs))
    root.require_group(layout.VIDEOS_GROUP)
    index_files(url, storage_options).ensure_group()
    return root


def _remove_dead_staging_folders(target: str) -> None:
    """Remove ``<target>.creating-<host>_<pid>-*`` folders whose process died (SIGKILL mid-creation)."""
    for folder in glob.glob(f"{glob.escape(target)}.creating-*-*"):
        tag = folder[len(target) + len(".creating-") :].rsplit("-", 1)[0]
        if made_by_dead_local_process(tag):
            shutil.rmtree(folder, ignore_errors=True)


def _video_path(video_id: str) -> str:
    return f"{layout.VIDEOS_GROUP}/{check_video_id(video_id)}"


def write_video(
    root: WritableStore, video_id: str, attrs: Mapping[str, Any], arrays: VideoArrays, *, keep_complete: bool = False
) -> bool:
    """Write one video group; its status becomes "complete" only after every array is stored.

    ``root``: the store (:func:`open_root_for_writing`).  The group's
    files are encoded in memory (:func:`_encode_arrays`) and handed to the store's sink
    (:mod:`comode.store.sinks`): the old group is removed (its marker first), the arrays and a
    "writing" zarr.json are written, and the zarr.json saying "complete" last, after the data
    is durably in place (local: fsynced; object stores: every PUT returned).
    ``keep_complete``: leave a group that is already complete alone (another run wrote it)
    and return False.  The write holds the video's claim (:mod:`comode.store.claims`).
    """
    attrs = {**attrs, layout.WRITE_ID: new_write_id()}
    writing = {
        layout.ZARR_JSON: group_metadata({**attrs, layout.ATTR_STATUS: layout.STATUS_WRITING}),
        **_encode_arrays(_array_specs(arrays)),
    }
    complete = {**attrs, layout.ATTR_STATUS: layout.STATUS_COMPLETE}
    return _write_group(
        _writable(root), video_id, complete, writing, group_metadata(complete), keep_complete=keep_complete
    )


def _write_group(
    store: WritableStore,
    video_id: str,
    attrs: Mapping[str, Any],
    files: Mapping[str, bytes],
    marker: bytes,
    *,
    keep_complete: bool,
) -> bool:
    """Replace the group of ``video_id`` by ``files`` and then ``marker`` (its zarr.json with
    ``attrs``), between the index journal's ``start`` (durable before the old group is
    touched) and ``done`` (after the marker is durable)."""
    path = _video_path(video_id)
    index = index_files(store.url, store.storage_options)
    with claimed(index, video_id):  # no other writer (process, run, host) touches the group meanwhile
        previous = index.read_markers([video_id])[video_id]
        if keep_complete and previous is not None and previous.attrs.get(layout.ATTR_STATUS) == layout.STATUS_COMPLETE:
            return False
        journal = journal_for(store.url, store.storage_options)
        journal.start(video_id, attrs[layout.WRITE_ID], replaces=previous.write if previous is not None else None)
        sink = store.sink()
        sink.clear(path)
        if files:
            sink.put(path, files)
        sink.put_marker(path, marker)
        journal.done(video_id, attrs[layout.WRITE_ID], attrs=attrs, nbytes=sum(map(len, files.values())) + len(marker))
    return True


def _array_specs(arrays: VideoArrays) -> list[tuple[str, np.ndarray, int, BloscSettings]]:
    """(name, data, rows per inner chunk, compressor) of every array of a video group
    (the optional ones only when given)."""
    specs = [
        (layout.FRAME_TYPES, arrays.frame_types, arrays.frame_types.shape[0], _COMPRESS_BYTES),
        (layout.IFRAME_INDEX, arrays.iframe_index.astype(np.int32), arrays.iframe_index.shape[0], _COMPRESS_INT),
        (layout.IFRAMES, arrays.iframes, layout.IFRAMES_CHUNK, _COMPRESS_BYTES),
        (layout.MVS, arrays.mvs, layout.MVS_CHUNK_FRAMES, _COMPRESS_INT),
        (layout.MV_VALID, arrays.mv_valid, layout.MVS_CHUNK_FRAMES, _COMPRESS_MASK),
        (layout.RGB_STREAM, arrays.rgb_stream, layout.RGB_STREAM_CHUNK_BYTES, _COMPRESS_STREAM),
        (
            layout.RGB_STREAM_OFFSETS,
            arrays.rgb_stream_offsets.astype(np.int64),
            arrays.rgb_stream_offsets.shape[0],
            _COMPRESS_INT,
        ),
        (layout.TIMESTAMPS, arrays.timestamps, None, _COMPRESS_INT),
    ]
    return [
        (name, data, data.shape[0] if rows is None else rows, compressor)
        for name, data, rows, compressor in specs
        if data is not None
    ]


def _encode_arrays(specs) -> dict[str, bytes]:
    """Every file of the arrays of a video group ({relative path: bytes}; the group's own
    ``zarr.json`` is the marker, made by :func:`write_video`).

    Encoded by comode.store.zarr_files, not written through zarr-python: zarr checks and
    re-asserts every parent group, hops to a thread for every file operation and runs its
    async codec pipeline per chunk: about twice the CPU per video of this way
    (docs/performance.md).  The files are the same bytes (tested).
    """
    files: dict[str, bytes] = {}
    for name, data, chunk_rows, compressor in specs:
        encoded = array_files(
            data, chunk_rows=chunk_rows, blosc=compressor, dimension_names=layout.DIMENSION_NAMES[name]
        )
        files.update({f"{name}/{key}": body for key, body in encoded.items()})
    return files


def write_failure(
    root: WritableStore, video_id: str, attrs: Mapping[str, Any], reason: str, *, keep_complete: bool = False
) -> bool:
    """Record a video that could not be extracted, with its reason, and no arrays
    (``keep_complete``: not over a group that is complete; returns False then)."""
    attrs = {
        **attrs,
        layout.WRITE_ID: new_write_id(),
        layout.ATTR_STATUS: layout.STATUS_FAILED,
        layout.ATTR_ERROR: reason,
    }
    return _write_group(_writable(root), video_id, attrs, {}, group_metadata(attrs), keep_complete=keep_complete)


def relabel_video(root: WritableStore, video_id: str, labels: Mapping[str, Any]) -> bool:
    """Give a complete or failed group new label attributes (:data:`layout.LABEL_ATTRS`,
    from ``labels``; one absent there is removed), leaving its arrays alone; False when the
    group is neither (nothing to relabel: a run redoes it).

    Labels and splits are derived from the annotations, the pixels are not: when the
    annotations change, the store follows without re-extracting.  Only the group's
    ``zarr.json`` is replaced (atomically: a reader sees the old labels or the new ones), as
    a write of its own: announced in the journal before, recorded after, so the index follows.
    """
    store = _writable(root)
    path = _video_path(video_id)
    index = index_files(store.url, store.storage_options)
    with claimed(index, video_id):
        previous = index.read_markers([video_id])[video_id]
        status = previous.attrs.get(layout.ATTR_STATUS) if previous is not None else None
        if status not in (layout.STATUS_COMPLETE, layout.STATUS_FAILED):
            return False
        group = zarr.open_group(store.url, path=path, mode="r", storage_options=store.storage_options)
        current = group.attrs.asdict()
        last = (layout.WRITE_ID, layout.ATTR_STATUS, layout.ATTR_ERROR)  # where a write puts them
        attrs = {key: value for key, value in current.items() if key not in layout.LABEL_ATTRS + last}
        attrs.update({key: labels[key] for key in layout.LABEL_ATTRS if key in labels})
        attrs.update({key: current[key] for key in last if key in current})
        attrs[layout.WRITE_ID] = new_write_id()
        journal = journal_for(store.url, store.storage_options)
        journal.start(video_id, attrs[layout.WRITE_ID], replaces=previous.write)
        sink = store.sink()
        sink.put_marker(path, group_metadata(attrs))
        journal.done(video_id, attrs[layout.WRITE_ID], attrs=attrs, nbytes=sink.nbytes(path))
    return True
