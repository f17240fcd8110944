"""Chunks decoded by zarr-python in bounded memory, like tensorstore decodes them (issue 25).

Where arrays are read through zarr-python instead of tensorstore (a store opened with fsspec
``storage_options``, a process forked after its parent read through tensorstore:
:mod:`comode.store.arrays`), the metadata bounds of :mod:`comode.store.bounds` hold as they
do for tensorstore, but a chunk's own bytes could still ask for more: zarr-python's
compressors (numcodecs) allocate what a compressed chunk's header declares, or decompress
until the data ends.  A 256 KiB zstd frame declaring 8 GiB of content in a chunk of the
right size was decompressed to 8 GiB before zarr compared it with the chunk (a
``MemoryError`` under a 4 GiB limit); an 8 MiB gzip stream of 8 GiB of zeros likewise; a
blosc header may declare 2 GiB.  tensorstore stops each at the chunk's size.

So the reader opens arrays through zarr-python inside :func:`bounded_decoding`, which makes
zarr build the Zarr v3 core compressors (``blosc``, ``gzip``, ``zstd``) from the subclasses
below: each refuses a chunk that would decode to more than the chunk holds
(:func:`decoded_limit`), from its header before anything is allocated (blosc, zstd) or
while it decompresses (gzip, and zstd frames that do not declare their size).  Other codecs
(``numcodecs.*``: tensorstore reads none of them) are refused from the metadata
(:func:`codec_problem`).  A refusal is an :class:`~comode.store.bounds.OversizedVideo`:
training skips and counts the video, ``store validate --data`` names it.

Valid chunks decode exactly as with zarr's own classes (the subclasses only check first),
and only arrays opened inside the block get them: other zarr users in the process are
not affected.
"""

from __future__ import annotations

import contextlib
import math
import struct
import zlib
from typing import Any, Iterator

import numpy as np
import zarr
from numcodecs.zstd import decompress as zstd_decompress
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ShardingCodec, TransposeCodec, ZstdCodec
from zarr.core.buffer.cpu import as_numpy_array_wrapper
from zarr.registry import register_codec

from comode.store.bounds import OversizedVideo, encoded_limit

__all__ = ["bounded_decoding", "codec_problem", "decoded_limit"]


def _chunk_bytes(chunk_spec: Any) -> int:
    """The bytes of a chunk of ``chunk_spec`` (zarr's ArraySpec: its shape and dtype)."""
    return math.prod(chunk_spec.shape) * chunk_spec.dtype.to_native_dtype().itemsize


def decoded_limit(chunk_spec: Any) -> int:
    """The most bytes a compressor of a chunk of ``chunk_spec`` may decode to: the chunk's
    bytes, and a little more for chained codecs (one's output is another's input)."""
    return encoded_limit(_chunk_bytes(chunk_spec))


def _refuse(what: str, chunk_spec: Any) -> OversizedVideo:
    """``what`` ("a ... chunk ... more") than a chunk of ``chunk_spec`` may hold."""
    return OversizedVideo(
        f"{what} than the {decoded_limit(chunk_spec)} bytes a chunk of shape "
        f"{tuple(chunk_spec.shape)} {chunk_spec.dtype.to_native_dtype()} may hold"
    )


def _zstd_content_size(frame: bytes) -> int | None:
    """The content size a zstd frame's header declares (RFC 8878, 3.1.1.1), None if it
    declares none (or is no zstd frame: numcodecs then says why)."""
    if len(frame) < 6 or frame[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = frame[4]
    single_segment = descriptor >> 5 & 1
    size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    field = frame[start : start + size_bytes]
    if size_bytes == 0 or len(field) < size_bytes:
        return None
    value = int.from_bytes(field, "little")
    return value + 256 if size_bytes == 2 else value


class BoundedZstdCodec(ZstdCodec):
    """zarr's ``zstd`` codec, refusing frames that decode to more than their chunk holds."""

    def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        declared = _zstd_content_size(chunk_bytes.as_numpy_array()[:18].tobytes())
        if declared is None:
            # numcodecs would decompress until the data ends: into a buffer of the chunk's
            # size instead (a frame that does not fit fails)
            chunk = _chunk_bytes(chunk_spec)
            try:
                return as_numpy_array_wrapper(
                    lambda data: zstd_decompress(data, np.empty(chunk, np.uint8)), chunk_bytes, chunk_spec.prototype
                )
            except RuntimeError as error:  # a ValueError: readers skip the video
                raise ValueError(f"a zstd chunk does not decode into its {chunk} bytes ({error})") from None
        if declared > decoded_limit(chunk_spec):
            raise _refuse(f"a zstd chunk declares {declared} bytes of content, more", chunk_spec)
        return super()._decode_sync(chunk_bytes, chunk_spec)  # numcodecs allocates `declared`


class BoundedBloscCodec(BloscCodec):
    """zarr's ``blosc`` codec, refusing chunks whose header declares more than they hold."""

    def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        header = chunk_bytes.as_numpy_array()[:16].tobytes()
        if len(header) == 16:  # else numcodecs says it is no blosc chunk
            declared = struct.unpack_from("<I", header, 4)[0]  # nbytes: the decoded size
            if declared > decoded_limit(chunk_spec):
                raise _refuse(f"a blosc chunk's header declares {declared} bytes, more", chunk_spec)
        return super()._decode_sync(chunk_bytes, chunk_spec)


class BoundedGzipCodec(GzipCodec):
    """zarr's ``gzip`` codec, decompressing no more than the chunk holds."""

    def _decode_sync(self, chunk_bytes: Any, chunk_spec: Any) -> Any:
        limit = decoded_limit(chunk_spec)

        def gunzip(data: np.ndarray) -> bytearray:
            rest, out = data.tobytes(), bytearray()
            while rest:  # one gzip member after another, like gzip.GzipFile
                member = zlib.decompressobj(16 + zlib.MAX_WBITS)
                try:
                    out += member.decompress(rest, limit + 1 - len(out))
                except zlib.error as error:  # a ValueError, like numcodecs' other errors
                    raise ValueError(f"a gzip chunk does not decode: {error}") from None
                if len(out) > limit:
                    raise _refuse("a gzip chunk decodes to more", chunk_spec)
                if not member.eof:
                    raise ValueError("a gzip chunk ends in the middle of its stream (truncated)")
                rest = member.unused_data
            return out

        return as_numpy_array_wrapper(gunzip, chunk_bytes, chunk_spec.prototype)


_BOUNDED = {"zstd": BoundedZstdCodec, "blosc": BoundedBloscCodec, "gzip": BoundedGzipCodec}
for _name, _codec in _BOUNDED.items():
    register_codec(_name, _codec)
_CONFIG = {f"codecs.{name}": f"{codec.__module__}.{codec.__qualname__}" for name, codec in _BOUNDED.items()}


@contextlib.contextmanager
def bounded_decoding() -> Iterator[None]:
    """Arrays opened by zarr-python in the block decode their chunks in bounded memory."""
    with zarr.config.set(_CONFIG):
        yield


# The Zarr v3 core codecs: what tensorstore reads, and what the classes above bound.
_CORE = (BytesCodec, TransposeCodec, ShardingCodec, Crc32cCodec, BloscCodec, GzipCodec, ZstdCodec)


def _codecs(codecs: Any) -> Iterator[Any]:
    for codec in codecs:
        yield codec
        if isinstance(codec, ShardingCodec):
            yield from _codecs((*codec.codecs, *codec.index_codecs))


def codec_problem(name: str, array: zarr.Array) -> str | None:
    """Why zarr-python must not read ``array`` (the array ``name``): a codec other than the
    Zarr v3 core ones, whose decoded size nothing bounds; else None."""
    codecs = getattr(array.metadata, "codecs", None)
    if codecs is None:
        return f"{name} is not a Zarr v3 array"
    for codec in _codecs(codecs):
        if not isinstance(codec, _CORE):
            codec_name = codec.to_dict().get("name", type(codec).__name__)
            return f"{name} uses the codec {codec_name!r}; a store's arrays use the Zarr v3 core codecs only"
    return None
