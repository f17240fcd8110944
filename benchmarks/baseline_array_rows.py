"""The local Zarr reader comode used before tensorstore (``ArrayRows``, until issue 15), kept
only as the baseline that ``benchmarks/bench_loader.py`` measures the tensorstore read path
against in the same run.  Not part of the package: it reads only local stores in the
layout of ``comode.store.zarr_files``.
"""

from __future__ import annotations

import json
import operator
import os
from typing import Any, Mapping

import numpy as np
from numcodecs import Blosc

from comode.store.zarr_files import _EMPTY, _INDEX_CODECS, _crc32c

# --------------------------------------------------------------------------------------
# Reading the same files back
# --------------------------------------------------------------------------------------


def open_rows(folder: str) -> "ArrayRows | None":
    """A reader of the local array in ``folder`` if its metadata is the layout above, else
    None (the caller reads it through zarr-python: another writer's layout, or no array)."""
    try:
        with open(os.path.join(folder, "zarr.json"), "rb") as handle:
            metadata = json.loads(handle.read())
        return ArrayRows(folder, metadata)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


class ArrayRows:
    """Rows (axis 0) of a local array in this module's layout, read from its files directly.

    ``rows[a:b]``, ``rows[a:b:step]``, ``rows[k]``, ``rows[...]``, ``rows[ks]`` and
    ``rows.oindex[ks]`` (``ks`` a list or array of row numbers, any order), each optionally
    followed by indices of the other axes (``rows[a:b, 0]``), return NumPy arrays with the
    values of the zarr.Array they stand for (writeable, like zarr's).  A missing chunk or
    shard reads as zeros; a chunk or shard index whose CRC32C does not match, a shard too
    short for its index (an empty file too, which zarr would read as zeros) or an index
    pointing outside its file raises ValueError, which the training loader skips and counts.
    Boolean masks, float indices and tuples in ``oindex`` are refused (IndexError), not
    guessed.  Why: zarr-python took 3.2 ms to read 50 frames of
    MVs (two inner chunks of one shard), this 0.2 ms; the training loader reads such ranges
    for every sample.  Nothing is cached between reads, so a group rewritten in the meantime
    is read as it is now.
    """

    def __init__(self, folder: str, metadata: Mapping[str, Any]) -> None:
        if (
            metadata.get("zarr_format") != 3
            or metadata.get("node_type") != "array"
            or metadata["fill_value"] != 0
            or metadata["chunk_grid"]["name"] != "regular"
            or metadata.get("storage_transformers", [])
        ):
            raise ValueError("not an array of this layout")
        self.shape = tuple(metadata["shape"])
        self.dtype = np.dtype(metadata["data_type"]).newbyteorder("<")
        outer = tuple(metadata["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = metadata["codecs"]
        self._sharded = codecs[0]["name"] == "sharding_indexed"
        if self._sharded:
            sharding = codecs[0]["configuration"]
            if len(codecs) != 1 or sharding["index_location"] != "end" or sharding["index_codecs"] != _INDEX_CODECS:
                raise ValueError("not an array of this layout")
            inner, codecs = tuple(sharding["chunk_shape"]), sharding["codecs"]
        else:
            inner = outer
        if (
            [c["name"] for c in codecs] != ["bytes", "blosc", "crc32c"]
            or self.dtype.kind not in "iu"
            or codecs[0].get("configuration", {}).get("endian", "little") != "little"
            or metadata["chunk_key_encoding"] != {"name": "default", "configuration": {"separator": "/"}}
            or len(self.shape) == 0
            or inner[1:] != outer[1:]
            or outer[1:] != tuple(max(1, s) for s in self.shape[1:])
            or outer[0] < max(1, self.shape[0])
            or outer[0] % inner[0]
        ):  # one file holds every row
            raise ValueError("not an array of this layout")
        self.ndim = len(self.shape)
        self._chunk_shape = inner
        self._chunks_per_file = outer[0] // inner[0]
        self._path = os.path.join(folder, "c", *("0" * self.ndim))
        self._blosc = Blosc()  # decoding reads the codec's settings from each chunk's header

    @property
    def oindex(self) -> "_RowsAt":
        return _RowsAt(self)

    def __getitem__(self, key: Any) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if first is Ellipsis or (isinstance(first, tuple) and not first):
            return self._read(0, self.shape[0])[(Ellipsis, *rest)]
        if isinstance(first, slice):
            start, stop, step = first.indices(self.shape[0])
            if step < 1:
                raise IndexError("ArrayRows reads rows in increasing order only (step >= 1)")
            rows = self._read(start, max(start, stop))[::step]
        elif isinstance(first, (list, np.ndarray)):
            rows = self.take(first)
        else:
            index = _row_number(first)
            if not -self.shape[0] <= index < self.shape[0]:
                raise IndexError(f"index {index} is out of bounds for axis 0 with size {self.shape[0]}")
            index %= self.shape[0]
            # A copy: a view would keep the whole decoded chunk (4 I-frames) alive.
            return self._read(index, index + 1)[0][rest].copy()
        return rows[(slice(None), *rest)]

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (any order, repeats and negative numbers allowed): each needed
        chunk is read once."""
        given = np.asarray(indices)
        if given.ndim != 1 or (given.size and given.dtype.kind not in "iu"):
            raise IndexError(f"rows are selected by a 1-d list of integers, got {given.dtype} {given.shape}")
        indices = given.astype(np.int64)
        if indices.size and (indices.min() < -self.shape[0] or indices.max() >= self.shape[0]):
            raise IndexError(f"row indices must be in [-{self.shape[0]}, {self.shape[0]})")
        indices %= max(1, self.shape[0])
        rows = self._chunk_rows
        ids = [int(c) for c in np.unique(indices // rows)]
        chunks = dict(zip(ids, self._decoded_chunks(ids)))
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        for i, row in enumerate(indices.tolist()):
            out[i] = chunks[row // rows][row % rows]
        return out

    @property
    def _chunk_rows(self) -> int:
        return self._chunk_shape[0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        rows = self._chunk_rows
        ids = list(range(start // rows, (stop - 1) // rows + 1))
        block = np.concatenate(self._decoded_chunks(ids)) if len(ids) > 1 else self._decoded_chunks(ids)[0]
        offset = ids[0] * rows
        return block[start - offset : stop - offset]

    def _decoded_chunks(self, ids: list[int]) -> list[np.ndarray]:
        """Chunks ``ids`` of the array, each (chunk rows, ...) (trailing axes cut to the shape)."""
        raw = self._chunk_bytes(ids)
        trim = tuple(slice(0, s) for s in self.shape[1:])
        out = []
        for data in raw:
            if data is None:
                out.append(np.zeros(self._chunk_shape, dtype=self.dtype)[(slice(None), *trim)])
                continue
            body = _checked(data, "chunk")
            chunk = np.empty(self._chunk_shape, dtype=self.dtype)  # writeable, like zarr's results
            decoded_size = _blosc_decoded_size(body)
            if decoded_size != chunk.nbytes:  # blosc would fill a larger buffer in part
                raise ValueError(f"a chunk of {self._path} decodes to {decoded_size} bytes, expected {chunk.nbytes}")
            self._blosc.decode(body, out=chunk)
            out.append(chunk[(slice(None), *trim)])
        return out

    def _chunk_bytes(self, ids: list[int]) -> list[bytes | None]:
        """The stored bytes of chunks ``ids`` (None: not stored, i.e. all zeros)."""
        try:
            handle = open(self._path, "rb")
        except FileNotFoundError:
            return [None] * len(ids)
        with handle:
            if not self._sharded:
                return [handle.read()]
            n = self._chunks_per_file
            index_size = 16 * n + 4
            size = os.fstat(handle.fileno()).st_size
            if size < index_size:
                raise ValueError(f"shard {self._path} is shorter than its index ({size} < {index_size} bytes)")
            handle.seek(size - index_size)
            index = np.frombuffer(_checked(handle.read(index_size), "shard index"), dtype="<u8").reshape(n, 2)
            out = []
            for chunk_id in ids:
                offset, length = (int(v) for v in index[chunk_id])
                if offset == _EMPTY:
                    out.append(None)
                    continue
                if length < 4 or offset + length > size - index_size:
                    raise ValueError(
                        f"shard {self._path}: chunk {chunk_id} at {offset}+{length} lies outside "
                        f"its {size - index_size} data bytes"
                    )
                handle.seek(offset)
                out.append(handle.read(length))
            return out


class _RowsAt:
    def __init__(self, rows: ArrayRows) -> None:
        self._rows = rows

    def __getitem__(self, indices: Any) -> np.ndarray:
        if isinstance(indices, tuple):
            raise IndexError("ArrayRows.oindex selects rows only: oindex[list of row numbers]")
        return self._rows.take(indices)


def _blosc_decoded_size(body: bytes) -> int:
    """The uncompressed size a Blosc frame declares (bytes 4-8 of its 16-byte header)."""
    return int.from_bytes(body[4:8], "little") if len(body) >= 16 else -1


def _row_number(key: Any) -> int:
    """A scalar row index: an int or NumPy integer, not a bool or float (zarr refuses those)."""
    if isinstance(key, (bool, np.bool_)) or isinstance(key, np.ndarray) and key.ndim:
        raise IndexError(f"unsupported row index {key!r}")
    try:
        return operator.index(key)
    except TypeError:
        raise IndexError(f"unsupported row index {key!r}") from None


def _checked(data: bytes, what: str) -> bytes:
    """``data`` without its trailing CRC32C, which must match (zarr's own message)."""
    body, stored = data[:-4], data[-4:]
    computed = _crc32c(body)
    if len(data) < 4 or computed != stored:
        raise ValueError(
            f"Stored and computed checksum do not match ({what}). Stored: {stored!r}. Computed: {computed!r}."
        )
    return body
