"""The files of a Zarr v3 group and its arrays, encoded in memory without zarr-python.

Only the part of the Zarr v3 spec that a comode video group uses: arrays chunked along
their first axis only, fill value 0, codecs ``bytes`` (little endian) -> ``blosc`` ->
``crc32c``, and either one chunk or one ``sharding_indexed`` shard (index at the end,
itself ``bytes`` + ``crc32c``) holding every inner chunk.  Chunks equal to the fill value
are not written, like zarr-python's default (``write_empty_chunks=False``).

Why: building the same files through zarr-python (a MemoryStore, its async codec pipeline)
cost about twice the CPU per video that this module takes (docs/performance.md): the
difference is what re-encoding dozens of frames of a 240p source costs.  tests/store/test_zarr_files.py
checks that the files are byte for byte the ones zarr-python writes with its default
configuration, and that zarr-python reads them back.  (A zarr configuration that changes
``json_indent`` or ``array.write_empty_chunks``, or blosc threads turned on in numcodecs,
makes the bytes differ from zarr's: still the same valid arrays.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import google_crc32c
import numpy as np
from numcodecs import Blosc

_EMPTY = np.iinfo(np.uint64).max  # index entry of an inner chunk that is not stored
# The shard index: (offset, length) uint64 pairs, little endian, then their CRC32C.
_INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
_SHUFFLES = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}


@dataclass(frozen=True)
class BloscSettings:
    """The blosc codec's settings (its typesize comes from the array's dtype)."""

    cname: str
    clevel: int
    shuffle: str  # "noshuffle" | "shuffle" | "bitshuffle"


def group_metadata(attributes: Mapping[str, Any]) -> bytes:
    """A group's zarr.json."""
    return _json({"attributes": dict(attributes), "zarr_format": 3, "node_type": "group"})


def chunk_layout(shape: tuple[int, ...], chunk_rows: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(inner chunk shape, file shape) of an array of ``shape`` chunked by ``chunk_rows`` rows
    (clipped to the array, >= 1; other axes whole): one file holds every row, so the file
    shape is the chunk shape (a plain chunk) or a multiple of it along axis 0 (a shard)."""
    rows = shape[0] if shape else 0
    chunk = (max(1, min(chunk_rows, rows)), *(max(1, s) for s in shape[1:]))
    return chunk, (-(-max(rows, 1) // chunk[0]) * chunk[0], *chunk[1:])


def array_files(
    data: np.ndarray, *, chunk_rows: int, blosc: BloscSettings, dimension_names: tuple[str, ...] | None = None
) -> dict[str, bytes]:
    """The files of one array ({path relative to the array's folder: bytes}).

    ``data`` is chunked along axis 0 in blocks of ``chunk_rows`` (clipped to the array);
    every other axis is whole.  An array of one chunk is stored as that chunk; a longer one
    as one shard (one file) of inner chunks.  ``dimension_names`` (one per axis) go into the
    metadata: readers such as xarray need them to label the axes.
    """
    if data.dtype.kind not in "iu":  # fill value 0 and "all zero = empty chunk" are integer rules
        raise TypeError(f"zarr_files encodes integer arrays only, got {data.dtype}")
    if dimension_names is not None and len(dimension_names) != data.ndim:
        raise ValueError(f"{len(dimension_names)} dimension names for a {data.ndim}-d array")
    chunk_shape, outer = chunk_layout(data.shape, chunk_rows)
    chunk_rows = chunk_shape[0]
    num_chunks = outer[0] // chunk_rows
    codecs = _chunk_codecs(data.dtype, blosc)
    sharded = num_chunks > 1
    if sharded:
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(chunk_shape),
                    "codecs": codecs,
                    "index_codecs": _INDEX_CODECS,
                    "index_location": "end",
                },
            }
        ]
    metadata = {
        "shape": list(data.shape),
        "data_type": data.dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(outer)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {},
        **({} if dimension_names is None else {"dimension_names": list(dimension_names)}),
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }
    files = {"zarr.json": _json(metadata)}
    key = "c/" + "/".join("0" * len(data.shape))
    if data.size:
        chunks = [
            _encode_chunk(data[i * chunk_rows : (i + 1) * chunk_rows], chunk_shape, blosc) for i in range(num_chunks)
        ]
        body = _shard(chunks, data.ndim) if sharded else chunks[0]
        if body is not None:  # every chunk equal to the fill value: zarr writes no file
            files[key] = body
    return files


def _encode_chunk(rows: np.ndarray, chunk_shape: tuple[int, ...], blosc: BloscSettings) -> bytes | None:
    """bytes -> blosc -> crc32c of one chunk, padded with the fill value (0) to ``chunk_shape``;
    None for a chunk that is all fill value."""
    if not rows.any():
        return None
    if rows.shape != chunk_shape:
        padded = np.zeros(chunk_shape, dtype=rows.dtype)
        padded[: rows.shape[0]] = rows
        rows = padded
    raw = np.ascontiguousarray(rows, dtype=rows.dtype.newbyteorder("<")).view(np.uint8).reshape(-1)
    compressed = _blosc(blosc, rows.dtype.itemsize).encode(raw)
    return _with_crc32c(compressed)


def _shard(chunks: list[bytes | None], ndim: int) -> bytes | None:
    """Inner chunks in order (a single non-trivial axis: Morton order is plain order), then
    the index of (offset, length) uint64 pairs and its crc32c."""
    if all(c is None for c in chunks):
        return None
    index = np.full((len(chunks), *([1] * (ndim - 1)), 2), _EMPTY, dtype="<u8")
    flat = index.reshape(len(chunks), 2)
    offset = 0
    for i, chunk in enumerate(chunks):
        if chunk is not None:
            flat[i] = (offset, len(chunk))
            offset += len(chunk)
    return b"".join(c for c in chunks if c is not None) + _with_crc32c(index.tobytes())


def _crc32c(data: bytes) -> bytes:
    """The crc32c codec's 4 bytes: CRC32C of ``data``, little endian."""
    return np.uint32(google_crc32c.value(data)).astype("<u4").tobytes()


def _with_crc32c(data: bytes) -> bytes:
    return data + _crc32c(data)


@lru_cache(maxsize=None)
def _blosc(settings: BloscSettings, typesize: int) -> Blosc:
    return Blosc(
        cname=settings.cname,
        clevel=settings.clevel,
        shuffle=_SHUFFLES[settings.shuffle],
        blocksize=0,
        typesize=typesize,
    )


def _bytes_codec(dtype: np.dtype) -> dict[str, Any]:
    # Zarr writes no endianness for one-byte types.
    return {"name": "bytes"} if dtype.itemsize == 1 else {"name": "bytes", "configuration": {"endian": "little"}}


def _chunk_codecs(dtype: np.dtype, blosc: BloscSettings) -> list[dict[str, Any]]:
    return [
        _bytes_codec(dtype),
        {
            "name": "blosc",
            "configuration": {
                "typesize": dtype.itemsize,
                "cname": blosc.cname,
                "clevel": blosc.clevel,
                "shuffle": blosc.shuffle,
                "blocksize": 0,
            },
        },
        {"name": "crc32c"},
    ]


def _json(document: Mapping[str, Any]) -> bytes:
    # zarr-python's formatting (indent 2, NaN allowed), so the files are the same bytes.
    return json.dumps(document, indent=2, allow_nan=True).encode()
