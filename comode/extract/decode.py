"""Read the re-encoded streams: frame types and motion vectors (MV stream), packets and
I-frames (RGB stream).

Everything comes from one demux pass over the NUT file ffmpeg wrote.  The MV stream is
decoded with FFmpeg's motion-vector export, ``skip_idct=all`` and ``lowres=3``: vectors are
parsed from the bitstream before any reconstruction, so skipping the inverse DCT and doing
motion compensation at 1/8 size leaves them bit-identical (tested against the answer key and
full decoding) while the decode runs faster (docs/performance.md).  The RGB stream's packets are kept as they
are (that is the stored ``rgb_stream``); only its I-frames are decoded, to RGB.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from comode.extract.mvgrid import RECORD_FIELDS as _FIELDS
from comode.extract.mvgrid import records_from_columns
from comode.store import layout
from comode.store.rgb import frame_to_rgb

MV_STREAM, RGB_STREAM = 0, 1

# FFmpeg's AVMotionVector as laid out in a frame's MOTION_VECTORS side data (C struct
# alignment; the same dtype as PyAV's MotionVectors.to_ndarray, which builds it anew on every
# call, a third as much as the decode itself; docs/performance.md).  We keep each frame's raw bytes and
# view them all with this one, once per video.
AV_MOTION_VECTOR = np.dtype(
    [
        ("source", np.int32),
        ("w", np.uint8),
        ("h", np.uint8),
        ("src_x", np.int16),
        ("src_y", np.int16),
        ("dst_x", np.int16),
        ("dst_y", np.int16),
        ("flags", np.uint64),
        ("motion_x", np.int32),
        ("motion_y", np.int32),
        ("motion_scale", np.uint16),
    ],
    align=True,
)

EMPTY_RECORDS = np.zeros(0, dtype=[(name, np.int32) for name in _FIELDS])


@dataclass
class DecodedStreams:
    """What one demux pass yields (T frames, K I-frames, n MV records, N stream bytes)."""

    frame_types: np.ndarray  # (T,) uint8 ASCII
    records: np.ndarray  # (n,) structured MV records
    frame_of_record: np.ndarray  # (n,) int64
    rgb_stream: np.ndarray  # (N,) uint8
    rgb_stream_offsets: np.ndarray  # (T + 1,) int64
    iframe_index: np.ndarray  # (K,) int32, from the MV stream's frame types
    iframes: np.ndarray  # (K, h, w, 3) uint8 RGB, decoded from the RGB stream


# FFmpeg decoder options for reading motion vectors: export them as side data; skip the
# inverse DCT and reconstruct at 1/8 size (pixels are not needed, the vectors are parsed
# before reconstruction).
MV_DECODER_OPTIONS = {"flags2": "+export_mvs", "skip_idct": "all", "lowres": "3"}
# For streams without B-frames (ours): every frame can be output as soon as it is decoded.
# Without it the MPEG-2 decoder holds one frame back and hands out the last one only when
# flushed -- without its motion-vector side data (measured: the last P-frame of every video
# came out all-zero).  The other frames are bit-identical.  Wrong for streams with B-frames.
# Our MPEG-2 streams also carry the low_delay bit in their own header (encode._low_delay_args),
# so decoders that cannot be given this flag (mv-extractor) behave the same; the flag here
# stays for streams written without it.
_LOW_DELAY = {"flags": "low_delay"}

# AVPictureType values (PyAV exposes them as plain ints or an IntEnum, depending on version).
_PICTURE_TYPE_LETTER = {1: ord("I"), 2: ord("P"), 3: ord("B")}


def _frame_type(frame: av.VideoFrame) -> int:
    return _PICTURE_TYPE_LETTER.get(int(frame.pict_type), ord("?"))


class MotionVectorReader:
    """Decode MV-stream packets one by one; collect each frame's type and vectors.

    ``low_delay`` only for streams without B-frames (see _LOW_DELAY).
    """

    def __init__(self, codec: str, extradata: bytes | None = None, *, low_delay: bool = True):
        self._context = av.CodecContext.create(codec, "r")
        self._context.thread_count = 1
        if extradata:  # MPEG-4 Part 2 in NUT keeps its VOL header there, not in the packets
            self._context.extradata = extradata
        self._context.options = {**MV_DECODER_OPTIONS, **(_LOW_DELAY if low_delay else {})}
        self._types: list[int] = []
        self._vectors: list[bytes] = []  # each frame's raw AVMotionVector records (b"": none)
        self._flushed = False
        # Frames the decoder handed out only when flushed: FFmpeg attaches no motion vectors
        # to those, so their (empty) records would read as "no motion".
        self.frames_from_flush = 0

    def decode(self, packet: av.Packet | None) -> None:
        """Feed one packet (None flushes the decoder)."""
        before = len(self._types)
        self._decode(packet)
        if packet is None:
            self.frames_from_flush += len(self._types) - before

    def _decode(self, packet: av.Packet | None) -> None:
        for frame in self._context.decode(packet):
            self._types.append(_frame_type(frame))
            side = frame.side_data.get("MOTION_VECTORS")
            raw = bytes(side) if side is not None else b""
            # len(side) counts with the compiled sizeof(AVMotionVector): a library whose struct
            # differs from our dtype is refused here instead of read as shifted garbage.
            if raw and len(raw) != len(side) * AV_MOTION_VECTOR.itemsize:
                raise ValueError(
                    f"AVMotionVector is {len(raw) // max(len(side), 1)} bytes in this FFmpeg, "
                    f"comode reads {AV_MOTION_VECTOR.itemsize}"
                )
            self._vectors.append(raw)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T,) uint8 frame types, (n,) records with RECORD_FIELDS, (n,) frame of each record."""
        if not self._flushed:
            self.decode(None)
            self._flushed = True
        return np.array(self._types, dtype=np.uint8), *_flatten(self._vectors, AV_MOTION_VECTOR)


def _flatten(vectors: list[bytes], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's raw records of ``dtype`` (b"": none) -> (n,) records with RECORD_FIELDS
    and the (n,) frame number of each.

    Joined as bytes and viewed once: np.concatenate of structured arrays was an order of
    magnitude slower than the byte join (docs/performance.md); fields are selected once at
    the end, not per frame.
    """
    counts = np.fromiter((len(v) // dtype.itemsize for v in vectors), dtype=np.int64, count=len(vectors))
    if not counts.any():
        return EMPTY_RECORDS, np.zeros(0, dtype=np.int64)
    records = np.frombuffer(b"".join(vectors), dtype=dtype)[list(_FIELDS)]
    return records, np.repeat(np.arange(len(vectors)), counts)


def read_file_vectors(
    path: Path, *, low_delay: bool = False, keyframes: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """One demux pass over an existing video file through MotionVectorReader: (T,) frame
    types, (n,) records, (n,) frame of each record, and the key-frame packets if ``keyframes``.

    ``low_delay`` only for files without B-frames (any file may have them: off by default).
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        reader = MotionVectorReader(stream.codec_context.name, stream.codec_context.extradata, low_delay=low_delay)
        packets = []
        for packet in container.demux(stream):
            if packet.size:
                reader.decode(packet)
                if keyframes and packet.is_keyframe:
                    packets.append(bytes(packet))
    return (*reader.result(), packets)


def read_motion_vectors(path: Path, *, backend: str = "pyav") -> list[tuple[str, np.ndarray]]:
    """Frame type and raw MV records of every frame of an existing video file (no re-encode).

    Returns one (type letter, (n,) structured records) pair per frame, presentation order.
    Used for the answer-key test.
    """
    if backend == "mvextractor":
        frames = _mvextractor_frames_from_file(str(path))
        return [(chr(t), r if r is not None else EMPTY_RECORDS) for t, r in frames]
    frame_types, records, owner, _ = read_file_vectors(path)
    per_frame = np.split(records, np.searchsorted(owner, np.arange(1, len(frame_types))))
    return [(chr(t), r) for t, r in zip(frame_types, per_frame)]


def _rgb_decoder() -> av.CodecContext:
    context = av.CodecContext.create(layout.RGB_CODEC, "r")
    context.thread_count = 1
    return context


def read_streams(nut_path: Path, *, codec: str, rgb_size: tuple[int, int], mv_backend: str = "pyav") -> DecodedStreams:
    """Demux ``nut_path`` once and decode what extraction needs."""
    with av.open(str(nut_path)) as container:
        packets_mv: list[bytes] = []
        packets_rgb: list[bytes] = []
        rgb_key: list[bool] = []
        extradata = container.streams[MV_STREAM].codec_context.extradata
        reader = MotionVectorReader(codec, extradata) if mv_backend == "pyav" else None
        for packet in container.demux():
            if packet.size == 0:
                continue
            if packet.stream.index == MV_STREAM:
                if reader is None:
                    packets_mv.append(bytes(packet))
                else:
                    reader.decode(packet)
            elif packet.stream.index == RGB_STREAM:
                packets_rgb.append(bytes(packet))
                rgb_key.append(packet.is_keyframe)
    if reader is None:
        frame_types, records, frame_of_record = _mvextractor_vectors([extradata or b"", *packets_mv], codec)
    else:
        frame_types, records, frame_of_record = reader.result()
        if reader.frames_from_flush:  # cannot happen with low_delay and no B-frames: say so if it does
            raise ValueError(
                f"the MV decoder held back {reader.frames_from_flush} frame(s) to the end; "
                "their motion vectors would be lost"
            )
    return _assemble(frame_types, records, frame_of_record, packets_rgb, rgb_key, rgb_size)


def _mvextractor_vectors(packets: list[bytes], codec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same vectors through mv-extractor, which reads files: write the MV stream to one."""
    suffix = ".m2v" if codec == "mpeg2video" else ".m4v"
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(b"".join(packets))
        handle.flush()
        frames = _mvextractor_frames_from_file(handle.name)
    vectors = [r.tobytes() if r is not None else b"" for _, r in frames]
    return np.array([t for t, _ in frames], dtype=np.uint8), *_flatten(vectors, EMPTY_RECORDS.dtype)


def _mvextractor_frames_from_file(path: str) -> list[tuple[int, np.ndarray | None]]:
    """Every frame's type and records (None: none) through mv-extractor's VideoCap.

    VideoCap cannot be told to decode with low delay, and FFmpeg attaches no motion vectors
    to the frames a decoder hands out only when flushed at the end of the file: on a stream
    whose decoder holds frames back (MPEG-2 not marked low-delay, any B-frames) the last
    frame(s) would come out with no vectors, indistinguishable from "no motion" (issue 18).
    Such a file is refused instead.
    """
    from mvextractor.videocap import VideoCap  # lazy: an optional package (comode[mvextractor])

    held_back = frames_held_back(path)
    if held_back:
        raise ValueError(
            f"mv-extractor would lose the motion vectors of the last {held_back} frame(s) of {path}: "
            "its decoder holds frames back to the end of the stream (not low-delay); "
            "use the pyav backend"
        )
    capture = VideoCap()
    if not capture.open(path):
        raise ValueError(f"mv-extractor could not open {path}")
    capture.set_decode_frames(False)
    frames = []
    try:
        while True:
            ok, _, table, frame_type = capture.read()
            if not ok:
                break
            records = records_from_columns(table) if len(table) else None
            frames.append((ord(frame_type[0]) if frame_type else ord("?"), records))
    finally:
        capture.release()
    return frames


def frames_held_back(path: str) -> int:
    """How many frames a plain decoder (as mv-extractor's) outputs only when flushed at the end
    of ``path``'s first video stream: 0 for a low-delay stream (what extraction writes)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        context = av.CodecContext.create(stream.codec_context.name, "r")
        context.extradata = stream.codec_context.extradata
        context.thread_count = 1  # frame threading would add its own delay
        for packet in container.demux(stream):
            if packet.size:
                context.decode(packet)
        return len(context.decode(None))


def _assemble(frame_types, records, frame_of_record, packets_rgb, rgb_key, rgb_size) -> DecodedStreams:
    num_frames = len(frame_types)
    if num_frames == 0:
        raise ValueError("no decodable video frames")
    if len(packets_rgb) != num_frames:
        raise ValueError(f"stream lengths differ: {num_frames} MV-stream frames, {len(packets_rgb)} RGB packets")
    if (frame_types == ord("B")).any():  # the low_delay reader would have put them out of order
        raise ValueError("the re-encoded MV stream has B-frames (the encoder ignored -bf 0)")
    iframe_index = np.flatnonzero(frame_types == ord("I")).astype(np.int32)
    rgb_keyframes = np.flatnonzero(np.array(rgb_key, dtype=bool)).astype(np.int32)
    if not np.array_equal(iframe_index, rgb_keyframes) or iframe_index.size == 0 or iframe_index[0] != 0:
        raise ValueError("I-frame positions of the two re-encoded streams disagree")
    sizes = np.fromiter((len(p) for p in packets_rgb), dtype=np.int64, count=num_frames)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    stream = np.frombuffer(b"".join(packets_rgb), dtype=np.uint8)
    iframes = decode_iframes([packets_rgb[i] for i in iframe_index], rgb_size)
    return DecodedStreams(
        frame_types=frame_types,
        records=records,
        frame_of_record=frame_of_record,
        rgb_stream=stream,
        rgb_stream_offsets=offsets,
        iframe_index=iframe_index,
        iframes=iframes,
    )


def decode_iframes(packets: list[bytes], size: tuple[int, int]) -> np.ndarray:
    """Decode MPEG-2 I-frame packets on their own (each is self-contained) to (K, h, w, 3) RGB."""
    context = _rgb_decoder()
    frames = []
    for data in packets:
        frames.extend(context.decode(av.Packet(data)))
    frames.extend(context.decode(None))
    if len(frames) != len(packets):
        raise ValueError(f"decoded {len(frames)} of {len(packets)} I-frames")
    width, height = size
    if not frames:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    # frame.to_ndarray() would set up a new swscale context per frame (a cost per frame that adds up; docs/performance.md).
    return np.stack([frame_to_rgb(f) for f in frames])
