"""The finetuning configuration (paper Sec. 4.1): every field with its default and why, and
how a run reads it (defaults <- YAML <- ``key=value`` overrides)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from comode.config_files import ConfigError, build_dataclass, config_values

__all__ = ["FinetuneConfig", "load_finetune_config", "RESUMABLE"]

# Fields that may change on --resume: how far this invocation goes and how data is fed.
RESUMABLE = frozenset({"stop_after_epoch", "workers", "test_videos_per_batch"})


@dataclass(frozen=True)
class FinetuneConfig:
    # One seed for everything: classifier init (and the backbone's when from scratch), data
    # order, clip starts, augmentation, dropout; each epoch re-derives its streams from it.
    seed: int = 0
    # Store split: train on its train videos, test on its test videos (papers: split 1).
    split: str = "1"
    # Training epochs; the cosine schedule spans all of them.  Our choice for UCF101 /
    # HMDB51-sized sets (~9.5k / ~3.6k train videos); the paper's setting may differ.
    epochs: int = 100
    # Stop after this epoch (the schedule still spans `epochs`); continue with --resume.
    stop_after_epoch: int | None = None
    # Clips per step.
    batch_size: int = 32
    # lr = lr_per_sample x batch_size (paper Sec. 4.1: 0.0001 x B on UCF101; HMDB51: 0.0002).
    lr_per_sample: float = 0.0001
    # SGD momentum (paper: SGD with momentum 0.9).
    momentum: float = 0.9
    # Weight decay on every parameter (the paper's pretraining value).
    weight_decay: float = 0.005
    # Linear warm-up epochs before the cosine decay (0: cosine from the first step).
    warmup_epochs: float = 0.0
    # Dropout before the classifier (paper Sec. 4.1: 0.3).
    dropout: float = 0.3
    # Clip side (paper: 112).
    size: int = 112
    # Smallest crop area fraction of the random resized crop (pretraining: 0.2).
    min_crop_area: float = 0.2
    # Colour jitter + grayscale as in pretraining; false = crop and flip only.
    colour: bool = True
    # Test clips per video (the 10-clip protocol).
    test_clips: int = 10
    # Test videos per forward pass (x test_clips clips).
    test_videos_per_batch: int = 4
    # DataLoader processes decoding clips (0: in the training process).
    workers: int = 4

    def __post_init__(self) -> None:
        checks = [
            (self.epochs > 0, "epochs must be > 0"),
            (self.batch_size > 0, "batch_size must be > 0"),
            (self.lr_per_sample > 0, "lr_per_sample must be > 0"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be in [0, epochs]"),
            (0 < self.min_crop_area <= 1, "min_crop_area must be in (0, 1]"),
            (self.stop_after_epoch is None or self.stop_after_epoch > 0, "stop_after_epoch must be > 0 or null"),
            (self.test_clips > 0, "test_clips must be > 0"),
            (self.workers >= 0, "workers must be >= 0"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("invalid finetune config: " + "; ".join(problems))

    @property
    def lr(self) -> float:
        return self.lr_per_sample * self.batch_size


def load_finetune_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> FinetuneConfig:
    """Defaults <- YAML (``configs/evaluate/finetune_*.yaml``) <- ``key=value`` overrides."""
    return build_dataclass(FinetuneConfig, config_values(path, overrides), prefix="")
