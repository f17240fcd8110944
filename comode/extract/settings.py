"""Extraction settings: one frozen dataclass, every field explained."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass

# comode.store (Zarr, PyAV: ~1 s) only in store_attrs: the CLI reads these defaults at start-up.

CODECS = ("mpeg2video", "mpeg4")
RESIZE_MODES = ("stretch", "crop")
MV_BACKENDS = ("pyav", "mvextractor")


@dataclass(frozen=True)
class ExtractSettings:
    # Codec of the re-encoded stream the motion vectors are read from.  MPEG-2 (default)
    # and MPEG-4 Part 2 have simple, fixed-size block MVs, which is what the paper uses.
    codec: str = "mpeg2video"
    # I-frame distance; no B-frames, so every P-frame's vectors point to the previous frame.
    gop: int = 12
    # Size of the MV stream.  340x256 is the usual Kinetics/UCF101 preprocessing size.
    width: int = 340
    height: int = 256
    # "stretch": scale to width x height ignoring aspect (the common 340x256 practice: every
    # video gets the same MV grid); "crop": scale to cover, then centre-crop (keeps aspect).
    resize: str = "stretch"
    # Fixed quantiser (ffmpeg -q:v, 1 best .. 31 worst) of the MV stream.  Fixed quality,
    # not bitrate, so that the same motion gives the same vectors in every video.
    quality: int = 5
    # Size of the stored RGB stream and I-frames: half the MV-stream size (short side 128,
    # what training resizes to before its 112 crop), which keeps the whole store under
    # 6 KB per frame (5.7 on the shared clips) and makes clip decoding several times cheaper than at 340x256.
    rgb_width: int = 170
    rgb_height: int = 128
    rgb_quality: int = 5
    # MV grid cell in MV-stream pixels: 16 = one MPEG-2 macroblock per cell.
    mv_cell: int = 16
    # Per-video wall-clock limit (seconds) for the isolated ffmpeg re-encode; a decoder
    # that hangs on a hostile file is killed and the video recorded as failed.
    timeout_s: float = 600.0
    # Per-video address-space limit (MiB, RLIMIT_AS) of that ffmpeg process; 0 = none.  The
    # static ffmpeg maps ~200 MiB before decoding anything; a 64x48 source needed < 240 MiB
    # and an 8K (7680x4320) one 300-340 MiB (measured, one malloc arena; see encode._limited),
    # so 4 GiB passes any real video while a decompression bomb fails as "out of memory"
    # instead of taking the machine down.
    memory_limit_mb: int = 4096
    # Who reads the motion vectors: PyAV's FFmpeg export (default: in memory, and with
    # skip_idct it is faster; docs/performance.md) or mv-extractor (same vectors; kept as the cross-check).
    mv_backend: str = "pyav"

    def __post_init__(self) -> None:
        problems = []
        if self.codec not in CODECS:
            problems.append(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.resize not in RESIZE_MODES:
            problems.append(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.mv_backend not in MV_BACKENDS:
            problems.append(f"mv_backend must be one of {MV_BACKENDS}, got {self.mv_backend!r}")
        elif self.mv_backend == "mvextractor" and importlib.util.find_spec("mvextractor") is None:
            problems.append(
                "mv_backend 'mvextractor' needs the optional package motion-vector-extractor "
                "(with OpenCV, ~330 MB): pip install 'comode[mvextractor]'"
            )
        for name in ("width", "height", "rgb_width", "rgb_height"):
            value = getattr(self, name)
            if value < 16 or value % 2:  # 4:2:0 chroma needs even sizes
                problems.append(f"{name} must be an even number >= 16, got {value}")
        if not 1 <= self.gop <= 300:
            problems.append(f"gop must be in 1..300, got {self.gop}")
        for name in ("quality", "rgb_quality"):
            if not 1 <= getattr(self, name) <= 31:
                problems.append(f"{name} must be in 1..31, got {getattr(self, name)}")
        if self.mv_cell not in (4, 8, 16, 32):
            problems.append(f"mv_cell must be 4, 8, 16 or 32, got {self.mv_cell}")
        if self.timeout_s <= 0:
            problems.append("timeout_s must be positive")
        if self.memory_limit_mb < 0 or 0 < self.memory_limit_mb < 256:
            problems.append(f"memory_limit_mb must be 0 (no limit) or >= 256, got {self.memory_limit_mb}")
        if problems:
            raise ValueError("invalid extraction settings: " + "; ".join(problems))

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(gh, gw) of the MV grid."""
        return -(-self.height // self.mv_cell), -(-self.width // self.mv_cell)

    def store_attrs(self) -> dict:
        """The settings that define the data (recorded in the store; resume requires equality)."""
        from comode.store import layout  # lazy: see the imports

        attrs = asdict(self)
        for runtime_only in ("timeout_s", "mv_backend", "memory_limit_mb"):
            attrs.pop(runtime_only)
        attrs[layout.ATTR_RGB_CODEC] = layout.RGB_CODEC
        return attrs
