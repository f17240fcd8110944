"""Size limits on every array read, derived from the store's own settings (issue 25).

An array's metadata decides how much memory reading it takes: a reader allocates the
declared chunk before it decodes it and the declared shape before it reads it, and a
missing chunk reads back as zeros of the declared size.  A store from elsewhere can declare
anything: an ``rgb_stream`` whose one chunk is declared 8 GiB (its file a 256 KiB zstd frame
of zeros) made tensorstore abort with ``std::bad_alloc``, an ``iframe_index`` declared 8 GiB
with no chunk at all was read as 8 GiB of zeros, and ``frames=400000000`` made training
draw negatives among 400 million window starts (gigabytes per sample).

So before an array is read its metadata is checked against what the store's own settings
give for the video (:func:`array_problem`):

- the video's frame count T (its ``frames``) is at most :data:`layout.MAX_FRAMES`;
- the dtype is the layout's, and the shape what T and the root's ``extraction`` settings
  give: (T,) for ``frame_types`` and ``timestamps``, (T + 1,) for the offsets,
  (T, 2, gh, gw) for ``mvs``, (K, rgb_height, rgb_width, 3) with K <= T I-frames,
  N <= T x :func:`packet_bound` bytes of stream;
- no chunk is larger than its array along any axis, nor holds more rows than the layout
  puts in one (:data:`layout.CHUNK_ROWS`), and no shard is larger than the array rounded
  up to whole chunks: a store rechunked by another tool stays readable.

A decoded chunk is then at most one layout chunk (or one T-long array) and a whole-array
read at most what T and the settings allow; a span of the stream is checked against the
frames it holds before it is read (:func:`span_problem`).  A reader reads a chunk's or
shard's file whole, so in a local store no file may be larger than its chunks compressed
(:func:`file_limit`: an 8 GiB sparse file, 4 KiB on disk, made tensorstore abort), and a
compressor may not decode a chunk to more than it holds (:func:`encoded_limit`;
:mod:`comode.store.bounded_codecs` for zarr-python).  The root's sizes themselves are
bounded by its schema (MPEG-2's largest picture).  A video over any of these is refused
with :class:`OversizedVideo`, a ValueError: training skips and counts it like a chunk
that fails its checksum, evaluation records it, ``store validate`` names it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from comode.store import layout
from comode.store.zarr_files import chunk_layout

__all__ = [
    "OversizedVideo",
    "frames_problem",
    "array_problem",
    "packet_bound",
    "span_problem",
    "encoded_limit",
    "file_limit",
]

# Bytes of one frame's packet in the stored MPEG-2 stream, per pixel of the store's RGB
# size, at most.  MPEG-2 codes 1.5 coefficients a pixel (4:2:0) and its longest code for
# one is a 24-bit escape: 4.5 bytes a pixel; the rest covers the sequence, picture, slice
# and macroblock headers of the smallest frames (16x16).  Real packets are ~100x smaller.
PACKET_BYTES_PER_PIXEL = 6


class OversizedVideo(ValueError):
    """A video whose metadata asks for more memory than the store's settings allow."""


def frames_problem(frames: Any) -> str | None:
    """Why ``frames`` (a group's attribute) cannot be a complete video's frame count, or None."""
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        return f"frames is {frames!r}, not a count of frames"
    if frames > layout.MAX_FRAMES:
        return f"frames is {frames}, more than the {layout.MAX_FRAMES} a store's video may have"
    return None


def packet_bound(extraction: Mapping[str, Any]) -> int:
    """The most bytes one frame's packet of ``rgb_stream`` may have in this store."""
    return int(extraction["rgb_width"]) * int(extraction["rgb_height"]) * PACKET_BYTES_PER_PIXEL


def _expected_shape(name: str, frames: int, extraction: Mapping[str, Any]) -> tuple[tuple[int, ...], int | None]:
    """(shape, bound): the exact shape of ``name`` in a video of ``frames`` frames, or with
    bound not None, the shape whose first length (K I-frames, N bytes) may be 0..bound."""
    cell = int(extraction["mv_cell"])
    gh, gw = -(-int(extraction["height"]) // cell), -(-int(extraction["width"]) // cell)
    rgb = (int(extraction["rgb_height"]), int(extraction["rgb_width"]), 3)
    return {
        layout.FRAME_TYPES: ((frames,), None),
        layout.TIMESTAMPS: ((frames,), None),
        layout.RGB_STREAM_OFFSETS: ((frames + 1,), None),
        layout.MVS: ((frames, 2, gh, gw), None),
        layout.MV_VALID: ((frames, gh, gw), None),
        layout.IFRAME_INDEX: ((0,), frames),
        layout.IFRAMES: ((0, *rgb), frames),
        layout.RGB_STREAM: ((0,), frames * packet_bound(extraction)),
    }[name]


def _shape_problem(name: str, shape: tuple[int, ...], frames: int, extraction: Mapping[str, Any]) -> str | None:
    expected, bound = _expected_shape(name, frames, extraction)
    if bound is None:
        return None if shape == expected else f"{name} shape {shape}, expected {expected}"
    if len(shape) == len(expected) and shape[1:] == expected[1:] and 0 <= shape[0] <= bound:
        return None
    if name == layout.RGB_STREAM:
        why = f"{packet_bound(extraction)} bytes for each of the video's {frames} frames"
        return f"{name} shape {shape}, expected (N,) with N <= {bound}, {why}"
    text = ", ".join(("K", *map(str, expected[1:]))) + ("," if len(expected) == 1 else "")
    return f"{name} shape {shape}, expected ({text}) with K <= {bound}, the video's frames"


def _chunking_problem(name: str, shape: tuple[int, ...], chunks: Sequence[int], shards: Sequence[int]) -> str | None:
    """Whether the array's chunks and shards are bounded by the array itself: no chunk
    larger than the array along any axis, nor holding more rows than the layout puts in
    one (:data:`layout.CHUNK_ROWS`; arrays not listed there are one chunk), and no shard
    larger than the array rounded up to whole chunks.  Any such chunking reads in bounded
    memory, so a store rechunked by another tool stays readable; what is refused is a
    chunk or shard declared larger than the data it can hold (a memory bomb: a decoder
    allocates the declared chunk, a shard's index has one entry per declared chunk)."""
    chunks, shards = tuple(int(n) for n in chunks), tuple(int(n) for n in shards)
    if len(chunks) != len(shape) or len(shards) != len(shape):
        return f"{name} declares chunks {list(chunks)} for a {len(shape)}-d shape {list(shape)}"
    row_limit = max(layout.CHUNK_ROWS.get(name, (shape[0] if shape else 1,)))
    limits = (max(1, min(row_limit, shape[0])), *(max(1, n) for n in shape[1:])) if shape else ()
    if any(c < 1 or c > limit for c, limit in zip(chunks, limits)):
        made = chunk_layout(shape, row_limit)[0]
        return (
            f"{name} declares chunks {list(chunks)}, larger than its shape {list(shape)} allows; "
            f"the store's layout chunks it as {list(made)}"
        )
    if any(s < c or s % c or s > -(-max(n, 1) // c) * c for s, c, n in zip(shards, chunks, shape)):
        return f"{name} declares shards {list(shards)} of chunks {list(chunks)}, larger than its shape {list(shape)}"
    return None


def array_problem(
    name: str,
    *,
    dtype: Any,
    shape: Sequence[int],
    chunks: Sequence[int],
    shards: Sequence[int] | None,
    frames: int,
    extraction: Mapping[str, Any],
) -> str | None:
    """Why the array ``name`` of a video of ``frames`` frames must not be read (its dtype,
    shape or chunking is not what the store's settings give), or None.  From its metadata
    only: ``chunks`` the (inner) chunk shape, ``shards`` the shard shape (None: no shards)."""
    if name not in layout.ARRAY_DTYPES:
        return f"{name} is not an array of the store's layout"
    if str(dtype) != layout.ARRAY_DTYPES[name]:
        return f"{name} dtype {dtype}, expected {layout.ARRAY_DTYPES[name]}"
    shape = tuple(int(n) for n in shape)
    return _shape_problem(name, shape, frames, extraction) or _chunking_problem(
        name, shape, chunks, chunks if shards is None else shards
    )


def span_problem(start: int, stop: int, frames: int, stream_bytes: int, extraction: Mapping[str, Any]) -> str | None:
    """Why the bytes ``start:stop`` of a ``stream_bytes``-long ``rgb_stream`` (from its
    offsets) cannot be the packets of ``frames`` frames, or None: a span is read whole."""
    if not 0 <= start <= stop <= stream_bytes:
        return f"rgb_stream_offsets name bytes {start}:{stop} of a {stream_bytes}-byte rgb_stream"
    bound = frames * packet_bound(extraction)
    if stop - start > bound:
        return (
            f"rgb_stream_offsets give {frames} frame(s) {stop - start} bytes, more than the {bound} "
            f"their packets may have at the store's RGB size"
        )
    return None


def encoded_limit(data_bytes: int) -> int:
    """The most bytes ``data_bytes`` of a chunk take compressed by any chain of the Zarr v3
    core codecs: a little more than the data (zstd's bound n + n/256 + 64, blosc's n + 16,
    gzip's n + 5 per 16 KiB + 18, each codec's output another one's input)."""
    return data_bytes + data_bytes // 64 + 1024


def file_limit(*, dtype: Any, chunks: Sequence[int], shards: Sequence[int] | None) -> int:
    """The most bytes one chunk or shard file of an array may have: each of its chunks
    compressed (:func:`encoded_limit`), and a shard's index (16 bytes a chunk, a CRC32C).
    From the array's metadata, checked first (:func:`array_problem`)."""
    chunk = math.prod(int(n) for n in chunks) * np.dtype(str(dtype)).itemsize
    count = math.prod(int(n) for n in shards) // max(1, math.prod(int(n) for n in chunks)) if shards else 1
    return count * encoded_limit(chunk) + 16 * count + 4
