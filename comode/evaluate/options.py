"""What a caller of an evaluation chooses about the features it scores, beyond the checkpoint.

Retrieval, the linear probe and the ablation's cells all score the same kind of features
(:mod:`comode.evaluate.features`); :class:`FeatureOptions` carries the choices they share,
so each says once which network a random init builds, at what clip side, where the cache
is and on what device, and :func:`features_for` turns those into a split's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from comode.evaluate.features import Inference, SplitFeatures, default_device, split_features
from comode.evaluate.source import ClipGeometry, ModelSource
from comode.train.frames import WindowSpec

__all__ = ["FeatureOptions", "features_for"]


@dataclass(frozen=True)
class FeatureOptions:
    """The feature choices shared by every evaluation (defaults: what a checkpoint was trained on)."""

    # The network of checkpoint "random" (a checkpoint or exported backbone brings its own):
    # its backbone, channel scale and init seed, and the clip it is shown (default ClipGeometry).
    backbone: str | None = None
    width_multiplier: float = 1.0
    seed: int = 0
    geometry: ClipGeometry | None = None
    # Clip side (None: the side the model was trained on).
    size: int | None = None
    # Feature cache (None: <out_dir>/features).
    cache_dir: str | Path | None = None
    # Videos per forward pass, DataLoader processes decoding clips (0: in this process),
    # device ("cpu", "cuda", "cuda:1"; None: CUDA when present).
    videos_per_batch: int = 8
    workers: int = 0
    device: str | None = None
    show_progress: bool = False

    def source(self, checkpoint: str | Path | None) -> ModelSource:
        """The model behind ``checkpoint`` (a file, or "random" built from these options)."""
        return ModelSource.parse(
            checkpoint,
            backbone=self.backbone,
            width_multiplier=self.width_multiplier,
            seed=self.seed,
            geometry=self.geometry,
        )

    def inference(self, geometry: ClipGeometry) -> Inference:
        """How to run a network trained on ``geometry``: its clip, unless ``size`` says otherwise."""
        return Inference(
            window=WindowSpec(frames=geometry.frames, stride=geometry.stride),
            size=geometry.size if self.size is None else self.size,
            device=torch.device(self.device) if self.device else default_device(),
            videos_per_batch=self.videos_per_batch,
            workers=self.workers,
        )


def features_for(
    store_url: str,
    checkpoint: str | Path | None,
    options: FeatureOptions,
    *,
    split: str,
    out_dir: str | Path,
    label_set: str | None = None,
    needed_by: str = "this evaluation",
) -> SplitFeatures:
    """The features of ``split``'s train and test videos for ``checkpoint``'s model (cached).

    Raises:
        ValueError: a side of the split has no usable video (``needed_by`` names who needs both).
    """
    source = options.source(checkpoint)
    data = split_features(
        store_url,
        source,
        split=split,
        out_dir=Path(out_dir),
        inference=options.inference(source.geometry),
        cache_dir=options.cache_dir,
        show_progress=options.show_progress,
        label_set=label_set,
    )
    if data.train.count == 0 or data.test.count == 0:
        raise ValueError(
            f"split {split!r} has {data.train.count} usable train and {data.test.count} usable test videos; "
            f"{needed_by} needs both"
        )
    return data
