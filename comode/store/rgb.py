"""Decode RGB frames from a video's stored elementary stream (``rgb_stream``).

With GOP 12 and no B-frames, decode order equals presentation order and any frame is at
most 11 P-frames away from an I-frame.  To get frames ``indices`` we decode one contiguous
span: from the last I-frame at or before ``min(indices)`` up to ``max(indices)``, feeding
the stored packets straight to a decoder (no container parsing, no re-reading from the
start of the video), and convert only the wanted frames to RGB.
"""

from __future__ import annotations

import os
from typing import Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from comode.store import layout


def decode_span(
    packets: bytes | np.ndarray,
    offsets: np.ndarray,
    wanted: Sequence[int],
    *,
    codec: str = layout.RGB_CODEC,
    size: tuple[int, int] | None = None,
    limit: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode a span of packets and return the wanted frames as RGB.

    Args:
        packets: the bytes of the span, starting at an I-frame's packet.
        offsets: (S + 1,) byte offsets of the span's S packets relative to ``packets``.
        wanted: positions within the span (0 = the I-frame), ascending, duplicates allowed.
        codec: FFmpeg decoder name of the stream.
        size: optional (width, height) to scale to while converting (cheaper than
            converting at full size and resizing afterwards).
        limit: (width, height) no decoded frame may exceed: the store's RGB size.  A stream
            of larger frames (a store from elsewhere) is refused at its first frame, before
            a span of them fills memory.

    Returns:
        (len(wanted), h, w, 3) uint8 RGB.
    """
    if codec != layout.RGB_CODEC:  # a free-text attribute must not pick any of FFmpeg's decoders
        raise ValueError(f"rgb_codec {codec!r} is not the stored stream's codec {layout.RGB_CODEC!r}")
    data = memoryview(np.ascontiguousarray(np.frombuffer(packets, dtype=np.uint8)))
    context = av.CodecContext.create(codec, "r")
    context.thread_count = 1  # one core per loader worker / extraction task
    last = max(wanted)
    frames: list[av.VideoFrame] = []
    for i in range(min(last + 1, len(offsets) - 1)):
        packet = av.Packet(data[int(offsets[i]) : int(offsets[i + 1])])
        frames.extend(_within(context.decode(packet), limit))
        if len(frames) > last:
            break
    if len(frames) <= last:
        frames.extend(_within(context.decode(None), limit))  # drain the decoder's delay
    if len(frames) <= last:
        raise ValueError(f"stream span decoded to {len(frames)} frames, frame {last} was asked for")
    converted: dict[int, np.ndarray] = {}
    out = []
    for position in wanted:
        if position not in converted:
            converted[position] = frame_to_rgb(frames[position], size=size)
        out.append(converted[position])
    return np.stack(out)


def _within(frames: list[av.VideoFrame], limit: tuple[int, int] | None) -> list[av.VideoFrame]:
    for frame in frames:
        if limit is not None and (frame.width > limit[0] or frame.height > limit[1]):
            raise ValueError(
                f"the stored stream decodes to {frame.width}x{frame.height} frames, larger than the "
                f"store's RGB size {limit[0]}x{limit[1]}"
            )
    return frames


def frame_to_rgb(frame: av.VideoFrame, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as (h, w, 3) uint8 RGB, optionally scaled to ``size`` = (width, height)
    (area filter) while converting.  Converts in the calling thread (``threads=1``): swscale's
    default thread pool costs more than it gains on small frames and would compete with the
    other loader workers / extraction tasks for the same cores."""
    kwargs = {} if size is None else {"width": size[0], "height": size[1], "interpolation": "AREA"}
    return _reformatter().reformat(frame, format="rgb24", threads=1, **kwargs).to_ndarray()


_REFORMATTERS: dict[int, VideoReformatter] = {}


def _reformatter() -> VideoReformatter:
    """One swscale context per process, reused across calls: ``VideoFrame.to_ndarray`` sets a
    new one up for every frame, which measured as half of the per-sample decode time."""
    # A forked loader worker must not use its parent's context, nor free it: freeing the
    # inherited one in the child hung the worker (measured), so it is left alone.
    pid = os.getpid()
    if pid not in _REFORMATTERS:
        _REFORMATTERS[pid] = VideoReformatter()
    return _REFORMATTERS[pid]
