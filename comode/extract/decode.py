"""Read the re-encoded streams: frame types and motion vectors (MV stream), packets and
I-frames (RGB stream).

Everything comes from one demux pass over the NUT file ffmpeg wrote.  The MV stream is
decoded with FFmpeg's motion-vector export and ``skip_idct=all``: vectors are parsed from
the bitstream, so skipping pixel reconstruction leaves them bit-identical (tested) and
roughly doubles the decode speed.  The RGB stream's packets are kept as they are (that is
the stored ``rgb_stream``); only its I-frames are decoded, to RGB.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from comode.extract.mvgrid import RECORD_FIELDS as _FIELDS, records_from_columns
from comode.store.rgb import frame_to_rgb

MV_STREAM, RGB_STREAM = 0, 1


@dataclass
class DecodedStreams:
    """What one demux pass yields (T frames, K I-frames, n MV records, N stream bytes)."""

    frame_types: np.ndarray       # (T,) uint8 ASCII
    records: np.ndarray           # (n,) structured MV records
    frame_of_record: np.ndarray   # (n,) int64
    rgb_stream: np.ndarray        # (N,) uint8
    rgb_stream_offsets: np.ndarray  # (T + 1,) int64
    iframe_index: np.ndarray      # (K,) int32, from the MV stream's frame types
    iframes: np.ndarray           # (K, h, w, 3) uint8 RGB, decoded from the RGB stream


# FFmpeg decoder options for reading motion vectors: export them as side data, and skip the
# inverse DCT (pixels are not needed; the vectors are parsed before reconstruction).
MV_DECODER_OPTIONS = {"flags2": "+export_mvs", "skip_idct": "all"}


def _mv_decoder(codec: str, extradata: bytes | None = None) -> av.CodecContext:
    context = av.CodecContext.create(codec, "r")
    context.thread_count = 1
    if extradata:  # MPEG-4 Part 2 in NUT keeps its VOL header there, not in the packets
        context.extradata = extradata
    # low_delay: our stream has no B-frames, so every frame can be output as soon as it is
    # decoded.  Without it the MPEG-2 decoder holds one frame back and hands out the last
    # one only when flushed -- without its motion-vector side data (measured: the last
    # P-frame of every video came out all-zero).  The other frames are bit-identical.
    context.options = {**MV_DECODER_OPTIONS, "flags": "low_delay"}
    return context


def read_motion_vectors(path: Path, *, backend: str = "pyav") -> list[tuple[str, np.ndarray]]:
    """Frame type and raw MV records of every frame of an existing video file (no re-encode).

    Returns one (type letter, (n,) structured records) pair per frame, presentation order.
    Used for the answer-key test and the extract-only benchmark.
    """
    if backend == "mvextractor":
        frames = _mvextractor_frames_from_file(str(path))
    else:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = 1
            stream.codec_context.options = dict(MV_DECODER_OPTIONS)
            frames = [_mv_frame(frame) for frame in container.decode(stream)]
    empty = np.zeros(0, dtype=[(name, np.int32) for name in _FIELDS])
    return [(chr(t), r if r is not None else empty) for t, r in frames]


def _rgb_decoder() -> av.CodecContext:
    context = av.CodecContext.create("mpeg2video", "r")
    context.thread_count = 1
    return context


# AVPictureType values (PyAV exposes them as plain ints or an IntEnum, depending on version).
_PICTURE_TYPE_LETTER = {1: ord("I"), 2: ord("P"), 3: ord("B")}


def _frame_type(frame: av.VideoFrame) -> int:
    return _PICTURE_TYPE_LETTER.get(int(frame.pict_type), ord("?"))


def read_streams(nut_path: Path, *, codec: str, rgb_size: tuple[int, int], mv_backend: str = "pyav") -> DecodedStreams:
    """Demux ``nut_path`` once and decode what extraction needs."""
    with av.open(str(nut_path)) as container:
        packets_mv: list[bytes] = []
        packets_rgb: list[bytes] = []
        rgb_key: list[bool] = []
        extradata = container.streams[MV_STREAM].codec_context.extradata
        mv_context = _mv_decoder(codec, extradata) if mv_backend == "pyav" else None
        mv_frames: list[tuple[int, np.ndarray | None]] = []
        for packet in container.demux():
            if packet.size == 0:
                continue
            if packet.stream.index == MV_STREAM:
                if mv_context is None:
                    packets_mv.append(bytes(packet))
                else:
                    mv_frames.extend(_mv_frame(f) for f in mv_context.decode(packet))
            elif packet.stream.index == RGB_STREAM:
                packets_rgb.append(bytes(packet))
                rgb_key.append(packet.is_keyframe)
        if mv_context is not None:
            mv_frames.extend(_mv_frame(f) for f in mv_context.decode(None))
    if mv_backend == "mvextractor":
        mv_frames = _mvextractor_frames([extradata or b"", *packets_mv], codec)
    return _assemble(mv_frames, packets_rgb, rgb_key, rgb_size)


def _mv_frame(frame: av.VideoFrame) -> tuple[int, np.ndarray | None]:
    side = frame.side_data.get("MOTION_VECTORS")
    return _frame_type(frame), (side.to_ndarray() if side is not None else None)


def _mvextractor_frames(packets: list[bytes], codec: str) -> list[tuple[int, np.ndarray | None]]:
    """Same vectors through mv-extractor, which reads files: write the MV stream to one."""
    suffix = ".m2v" if codec == "mpeg2video" else ".m4v"
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(b"".join(packets))
        handle.flush()
        return _mvextractor_frames_from_file(handle.name)


def _mvextractor_frames_from_file(path: str) -> list[tuple[int, np.ndarray | None]]:
    from mvextractor.videocap import VideoCap

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


def _assemble(mv_frames, packets_rgb, rgb_key, rgb_size) -> DecodedStreams:
    num_frames = len(mv_frames)
    if num_frames == 0:
        raise ValueError("no decodable video frames")
    if len(packets_rgb) != num_frames:
        raise ValueError(f"stream lengths differ: {num_frames} MV-stream frames, {len(packets_rgb)} RGB packets")
    frame_types = np.array([t for t, _ in mv_frames], dtype=np.uint8)
    iframe_index = np.flatnonzero(frame_types == ord("I")).astype(np.int32)
    rgb_keyframes = np.flatnonzero(np.array(rgb_key, dtype=bool)).astype(np.int32)
    if not np.array_equal(iframe_index, rgb_keyframes) or iframe_index.size == 0 or iframe_index[0] != 0:
        raise ValueError("I-frame positions of the two re-encoded streams disagree")
    with_records = [(i, r) for i, (_, r) in enumerate(mv_frames) if r is not None and len(r)]
    if with_records:
        # Select the fields once, after concatenating (per frame it cost ~30 us x T).
        records = np.concatenate([r for _, r in with_records])[list(_FIELDS)]
        frame_of_record = np.repeat([i for i, _ in with_records], [len(r) for _, r in with_records])
    else:
        records = np.zeros(0, dtype=[(name, np.int32) for name in _FIELDS])
        frame_of_record = np.zeros(0, dtype=np.int64)
    sizes = np.fromiter((len(p) for p in packets_rgb), dtype=np.int64, count=num_frames)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    stream = np.frombuffer(b"".join(packets_rgb), dtype=np.uint8)
    iframes = _decode_iframes([packets_rgb[i] for i in iframe_index], rgb_size)
    return DecodedStreams(frame_types=frame_types, records=records, frame_of_record=frame_of_record,
                          rgb_stream=stream, rgb_stream_offsets=offsets, iframe_index=iframe_index,
                          iframes=iframes)



def _decode_iframes(packets: list[bytes], rgb_size: tuple[int, int]) -> np.ndarray:
    """Decode I-frame packets on their own (each is self-contained) to (K, h, w, 3) RGB."""
    context = _rgb_decoder()
    frames = []
    for data in packets:
        frames.extend(context.decode(av.Packet(data)))
    frames.extend(context.decode(None))
    if len(frames) != len(packets):
        raise ValueError(f"decoded {len(frames)} of {len(packets)} I-frames of the RGB stream")
    width, height = rgb_size
    if not frames:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    # frame.to_ndarray() would set up a new swscale context per frame (~1 ms each).
    return np.stack([frame_to_rgb(f) for f in frames])
