"""The source's frame rate in the RGB stream's MPEG-2 sequence headers.

The re-encode runs every frame on a fixed 1/25 s clock (:data:`comode.extract.encode.FRAME_CLOCK`:
frames are renumbered so that irregular source timestamps cannot stop the encoder), so the
encoder writes "25 fps" into every sequence header, and a player of the stored
``rgb_stream`` plays a 19.6 fps clip 27 % fast.  MPEG-2 (Main profile) can say only eight
rates, its ``frame_rate_code`` 1..8; we write the one nearest to the source's nominal rate
into each sequence header after encoding.

Why a patch after encoding and not the encoder's time base: the rate is known only from
ffmpeg's own log of the re-encode (a probe before it would cost a second open of every
source), and the field is four bits that change nothing else: with a fixed quantiser
(``-q``) no encoding decision depends on the rate, and no checksum covers the header.  (The
GOP headers' time codes still count at 25 frames a second; players ignore them.)  The exact
timing of each frame stays the store's ``timestamps`` array.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

# ISO/IEC 13818-2 table 6-4: frame_rate_code -> frames per second.
MPEG2_FRAME_RATES = {
    1: Fraction(24000, 1001),
    2: Fraction(24),
    3: Fraction(25),
    4: Fraction(30000, 1001),
    5: Fraction(30),
    6: Fraction(50),
    7: Fraction(60000, 1001),
    8: Fraction(60),
}
_SEQUENCE_HEADER = b"\x00\x00\x01\xb3"
# The byte after the start code and the 12-bit width and height: aspect ratio (high four
# bits), frame_rate_code (low four bits).
_RATE_BYTE = len(_SEQUENCE_HEADER) + 3


def nearest_frame_rate_code(fps: float) -> int:
    """The MPEG-2 ``frame_rate_code`` whose rate is nearest to ``fps`` (ties: the lower)."""
    return min(MPEG2_FRAME_RATES, key=lambda code: (abs(float(MPEG2_FRAME_RATES[code]) - fps), code))


def set_frame_rate(stream: np.ndarray, offsets: np.ndarray, iframe_index: np.ndarray, fps: float | None) -> int | None:
    """Write the rate nearest to ``fps`` into every sequence header of ``stream``, in place.

    Args:
        stream: (N,) uint8 MPEG-2 elementary stream, writable.
        offsets: (T + 1,) int64 byte offset of each frame's packet.
        iframe_index: (K,) frame numbers of the I-frames: the encoder starts each GOP, and
            only a GOP, with a sequence header.
        fps: the source's nominal rate; None or not positive: the stream is left as it is.

    Returns:
        the ``frame_rate_code`` written, or None when nothing was written.
    """
    if fps is None or not fps > 0:
        return None
    code = nearest_frame_rate_code(fps)
    data = memoryview(stream)
    for frame in iframe_index:
        start, stop = int(offsets[frame]), int(offsets[frame + 1])
        found = bytes(data[start : min(stop, start + 64)]).find(_SEQUENCE_HEADER)
        if found < 0:
            raise ValueError(f"the RGB stream's I-frame {frame} has no MPEG-2 sequence header")
        at = start + found + _RATE_BYTE
        stream[at] = (int(stream[at]) & 0xF0) | code
    return code
