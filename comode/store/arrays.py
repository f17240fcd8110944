"""Array reads through tensorstore: one read path for local folders and object stores.

    array = open_array("data/ucf101.zarr/videos/v1/mvs")   # or s3://bucket/x.zarr/videos/v1/mvs
    array[16:48]                   # (32, 2, gh, gw) int16, read now
    pending = array.start(np.s_[16:48])   # starts reading; pending.result() -> the same rows
    array.oindex[[3, 80, 7]]       # rows in any order

Why tensorstore: it reads the store's Zarr v3 files (sharding, blosc, crc32c) from local
folders and S3 alike, decodes in its own threads (so a sample's reads can be in flight at
once while Python decodes video) and verifies every chunk's CRC32C (a damaged chunk or
shard index raises ValueError, which the training loader skips and counts).  zarr-python
stays in charge of groups, attributes and listing (:mod:`comode.store.reader`).

One tensorstore context per process (:func:`context`), created on first use, holding:

- a cache of decoded chunks and shard indexes (``CACHE_BYTES``): on an object store, a
  shard's index would otherwise be fetched again before every chunk (measured on a
  loopback S3 server, several times slower without the cache; docs/performance.md).  Data is cached
  as of the array's opening (``recheck_cached_data="open"``): a complete video group is
  never rewritten in place (a redo deletes it first), and readers reopen a video after an
  error;
- one data-copy thread: a loader worker owns one core, and decoding is cheap next to the
  video decode that runs beside it.

Forks: tensorstore aborts a forked child that reads through it once the parent has read
through it (its thread pools do not survive a fork).  The training and evaluation loaders
start their workers with "forkserver", whose server never reads; a process forked
after its parent read (a "fork" DataLoader, a test) gets None from :func:`open_array`
and reads through zarr-python instead, slower but correct (logged once), its
compressors bounded like tensorstore's (:mod:`comode.store.bounded_codecs`).

Missing chunks read as zeros (the fill value), as with any Zarr reader: only a group whose
status is "complete" is read (the writer puts that marker on disk after its data,
:mod:`comode.store.writer`), and ``comode store validate --data`` reads everything.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import tensorstore as ts

from comode.store.location import kvstore

__all__ = ["StoredArray", "open_array", "context", "usable", "CACHE_BYTES"]

CACHE_BYTES = 32 << 20  # per process: ~120 I-frame chunks or ~700 MV chunks

logger = logging.getLogger(__name__)

# (pid of the process that made it, the context).  A context made by another pid means
# this process was forked after tensorstore ran: tensorstore would abort it.
_CONTEXT: tuple[int, ts.Context] | None = None


def usable() -> bool:
    """False in a process forked after its parent read through tensorstore."""
    return _CONTEXT is None or _CONTEXT[0] == os.getpid()


def context() -> ts.Context:
    """This process's tensorstore context (made on first use)."""
    global _CONTEXT
    if not usable():
        raise RuntimeError("tensorstore cannot run in a process forked after its parent used it")
    if _CONTEXT is None:
        _CONTEXT = (
            os.getpid(),
            ts.Context({"cache_pool": {"total_bytes_limit": CACHE_BYTES}, "data_copy_concurrency": {"limit": 1}}),
        )
    return _CONTEXT[1]


def open_array(url: str, *, ts_context: ts.Context | None = None) -> "StoredArray | None":
    """The Zarr v3 array at ``url`` opened for reading (its metadata is read now), or None
    where tensorstore has no driver for the URL or cannot run in this process (a fork, see
    above): the caller then reads it with zarr-python.  ``ts_context``: another tensorstore
    context than this process's (benchmarks: one without a cache).

    Raises ValueError (tensorstore's NOT_FOUND and the like) when there is no array."""
    spec = kvstore(url)
    if spec is None:
        return None
    if not usable():
        _warn_forked()
        return None
    handle = ts.open(
        {"driver": "zarr3", "kvstore": spec, "recheck_cached_data": "open", "recheck_cached_metadata": "open"},
        context=ts_context or context(),
        read=True,
    ).result()
    return StoredArray(handle)


_warned_pid: int | None = None


def _warn_forked() -> None:
    global _warned_pid
    if _warned_pid != os.getpid():
        _warned_pid = os.getpid()
        logger.warning(
            "process %d was forked after its parent read the store through tensorstore: reading "
            "through zarr-python here (slower); start worker processes with 'forkserver' or 'spawn'",
            os.getpid(),
        )


class StoredArray:
    """A read-only Zarr array with NumPy-style indexing that returns NumPy arrays.

    ``a[k]``, ``a[a:b]``, ``a[a:b:step]``, ``a[...]``, ``a[rows]`` and ``a.oindex[rows]``
    (``rows`` a list or array of integers, any order), each optionally followed by indices
    of the other axes.  Negative integers and slice bounds count from the end, like NumPy
    (tensorstore itself would read them as coordinates).  Results are fresh, writeable
    arrays.
    """

    def __init__(self, handle: ts.TensorStore) -> None:
        self._handle = handle
        self.shape: tuple[int, ...] = tuple(int(n) for n in handle.shape)
        self.dtype = np.dtype(handle.dtype.numpy_dtype)
        self.ndim = len(self.shape)
        # As zarr.Array names them: the (inner) chunk shape, and the shard shape (a chunk
        # of chunks; the chunk shape itself when there are no shards).
        self.chunks: tuple[int, ...] = tuple(int(n) for n in handle.chunk_layout.read_chunk.shape)
        self.shards: tuple[int, ...] = tuple(int(n) for n in handle.chunk_layout.write_chunk.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.start(key).result()

    def start(self, key: Any) -> ts.Future:
        """Start reading ``key`` (same keys as ``[]``); ``.result()`` waits and returns it."""
        return self._handle[_numpy_key(key, self.shape)].read()

    @property
    def oindex(self) -> "_Rows":
        return _Rows(self)

    def __repr__(self) -> str:
        return f"StoredArray(shape={self.shape}, dtype={self.dtype})"


class _Rows:
    def __init__(self, array: StoredArray) -> None:
        self._array = array

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._array[key]


def _numpy_key(key: Any, shape: tuple[int, ...]) -> Any:
    """``key`` with NumPy's meaning of negative indices turned into tensorstore coordinates
    (axes before an Ellipsis; integer lists are refused as floats or booleans are)."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for axis, part in enumerate(parts):
        if part is Ellipsis or axis >= len(shape):
            out.extend(parts[axis:])
            break
        out.append(_axis_key(part, shape[axis]))
    return tuple(out) if isinstance(key, tuple) else out[0]


def _axis_key(part: Any, size: int) -> Any:
    if isinstance(part, slice):
        start, stop, step = part.indices(size)
        if step < 0:
            raise IndexError("reversed slices are not supported")
        return slice(start, max(start, stop), step)
    if isinstance(part, (bool, np.bool_)) or isinstance(part, float):
        raise IndexError(f"unsupported index {part!r}")
    if isinstance(part, (list, np.ndarray)):
        rows = np.asarray(part)
        if rows.size and rows.dtype.kind not in "iu":
            raise IndexError(f"rows are selected by integers, got {rows.dtype}")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -size or rows.max() >= size):
            raise IndexError(f"row indices must be in [-{size}, {size})")
        return np.where(rows < 0, rows + size, rows)
    if isinstance(part, (int, np.integer)):
        index = int(part)
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of bounds for an axis of size {size}")
        return index % size
    return part
