"""Where the evaluated V-Network comes from: a checkpoint / exported backbone, or random init.

    network = EvaluatedNetwork.parse("runs/r3d26/last.pt")                       # or an exported .safetensors
    network = EvaluatedNetwork.parse("random", backbone="r3d_26", width_multiplier=1.0, seed=0)
    vnet = network.build()                     # (B, 3, 16, 112, 112) -> (B, C, T', H', W')
    network.describe()                         # JSON-safe, goes into reports and cache keys
    network.geometry                           # the clip it sees: frames, stride, size

Evaluation shows a network the clip it was trained on (frames, stride and side): a
checkpoint's geometry comes from its training config; a random init gets the one it is
given (``EvaluatedNetwork.parse(..., geometry=...)``, e.g. from the pretraining config it is the
floor of), else the paper's 16 x 4 frames at 112 px.

Random init is the "from scratch" baseline of the paper's Table 2: the same architecture,
weights drawn by the backbone's own initialiser from ``torch.manual_seed(seed)`` (the global
RNG state is restored afterwards), so two runs with the same seed evaluate the same network.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from comode.data.config import DataConfig
from comode.models.backbones import BACKBONES, build_backbone
from comode.models.config import ModelConfig
from comode.train.export import load_backbone, read_backbone_metadata

__all__ = ["RANDOM", "ClipGeometry", "EvaluatedNetwork", "file_sha256", "names_random_init"]

RANDOM = "random"


def names_random_init(checkpoint: str | Path | None) -> bool:
    """Whether ``checkpoint`` asks for a random initialisation ("random", "none", "scratch" or None)."""
    return checkpoint is None or str(checkpoint).lower() in (RANDOM, "none", "scratch")


@dataclass(frozen=True)
class ClipGeometry:
    """The clip a V-Network sees (defaults: the pretraining clip, the paper's 16 frames at
    stride 4, 112 px)."""

    frames: int = DataConfig.clip_frames
    stride: int = DataConfig.clip_stride
    size: int = DataConfig.size

    def __post_init__(self) -> None:
        if min(self.frames, self.stride, self.size) < 1:
            raise ValueError(f"clip frames, stride and size must be >= 1, got {self}")

    @classmethod
    def of_config(cls, data: Any) -> "ClipGeometry":
        """The training clip of a pretraining config's ``data`` section (dataclass or dict)."""
        get = (
            (lambda key, default: data.get(key, default))
            if isinstance(data, dict)
            else (lambda key, default: getattr(data, key, default))
        )
        return cls(
            frames=int(get("clip_frames", cls.frames)),
            stride=int(get("clip_stride", cls.stride)),
            size=int(get("size", cls.size)),
        )


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the checkpoint's identity in reports and cache keys).

    Hashed once per version of the file in this process: one evaluation asks several times
    (feature cache keys, reports), and an ablation run asks for every cell; a checkpoint of a
    full-size model is ~300 MB.  A version is the file's identity and change times: a file
    replaced by another of the same size with its mtime kept (cp -p) still has a new inode
    or ctime, which nothing can set back.
    """
    status = os.stat(path)
    version = (
        os.path.realpath(path),
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
    )
    if version not in _SHA256_OF_VERSION:
        _SHA256_OF_VERSION[version] = _hash_file(path)
    return _SHA256_OF_VERSION[version]


_SHA256_OF_VERSION: dict[tuple, str] = {}


def _hash_file(path: str | Path, *, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EvaluatedNetwork:
    """A checkpoint path (``path`` set) or a seeded random initialisation (``path`` None)."""

    path: Path | None
    backbone: str | None = None
    width_multiplier: float = 1.0
    seed: int = 0
    random_geometry: ClipGeometry = ClipGeometry()

    @classmethod
    def parse(
        cls,
        checkpoint: str | Path | None,
        *,
        backbone: str | None = None,
        width_multiplier: float = 1.0,
        seed: int = 0,
        geometry: ClipGeometry | None = None,
    ) -> "EvaluatedNetwork":
        """``checkpoint`` is a file, or "random" / "none" / None for a random initialisation
        (seen through ``geometry``, default :class:`ClipGeometry`; ignored for a file).

        Raises:
            ValueError: the file does not exist, or random init without a known clip backbone.
        """
        if names_random_init(checkpoint):
            name = backbone or ModelConfig.backbone
            if name not in BACKBONES or BACKBONES[name].input_kind != "clip":
                clips = sorted(k for k, v in BACKBONES.items() if v.input_kind == "clip")
                raise ValueError(f"--backbone must be one of {clips} for a random initialisation, got {name!r}")
            if not width_multiplier > 0:
                raise ValueError(f"--width-multiplier must be > 0, got {width_multiplier}")
            return cls(
                path=None,
                backbone=name,
                width_multiplier=float(width_multiplier),
                seed=int(seed),
                random_geometry=geometry or ClipGeometry(),
            )
        path = Path(checkpoint)
        if not path.is_file():
            raise ValueError(
                f"checkpoint {path} does not exist (give a last.pt / epoch_XXX.pt / exported "
                ".safetensors file, or 'random' for a random initialisation)"
            )
        return cls(path=path)

    @property
    def is_random(self) -> bool:
        return self.path is None

    @cached_property
    def _metadata(self) -> dict[str, Any]:
        """The checkpoint's training metadata, read once: reading it loads the whole file."""

        return read_backbone_metadata(self.path)

    @property
    def geometry(self) -> ClipGeometry:
        """The clip this network is evaluated on: a checkpoint's training clip, or a random
        init's given one."""
        if self.path is None:
            return self.random_geometry
        metadata = self._metadata
        default = ClipGeometry()
        return ClipGeometry(
            frames=int(metadata.get("clip_frames", default.frames)),
            stride=int(metadata.get("clip_stride", default.stride)),
            size=int(metadata.get("clip_size", default.size)),
        )

    def build(self) -> nn.Module:
        """The V-Network on the CPU (train mode, as freshly built; callers pick eval/train)."""
        if self.path is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                return build_backbone(self.backbone, width_multiplier=self.width_multiplier)

        return load_backbone(self.path)

    def describe(self) -> dict[str, Any]:
        """JSON-safe identity: for a file its absolute path, SHA-256 and training metadata."""
        if self.path is None:
            return {
                "kind": RANDOM,
                "backbone": self.backbone,
                "width_multiplier": self.width_multiplier,
                "seed": self.seed,
                "geometry": asdict(self.random_geometry),
            }
        metadata = self._metadata
        return {
            "kind": "checkpoint",
            "path": str(self.path.resolve()),
            "sha256": file_sha256(self.path),
            "backbone": metadata["backbone"],
            "width_multiplier": float(metadata["width_multiplier"]),
            "task": metadata.get("task"),
            "step": _int_or_none(metadata.get("step")),
            "epoch": _int_or_none(metadata.get("epoch")),
        }

    def label(self) -> str:
        """Short human name: ``last.pt (r3d_26 x1.0)`` or ``random r3d_26 x0.125 seed 0``."""
        if self.path is None:
            return f"random {self.backbone} x{self.width_multiplier:g} seed {self.seed}"
        return str(self.path)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
