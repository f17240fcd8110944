"""What a pretraining run takes from the data side, and the adapter that builds it from a
comode store.

A custom data source plugs in by building a :class:`TrainingData` itself (the tests do,
with an in-memory dataset); the loop reads nothing else of the data side.

Shape alphabet: B batch, T time, H height, W width, K negative motion windows,
gh / gw motion-vector grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from torch import Tensor

from comode.data.config import DataConfig
from comode.data.dataset import PretrainDataset
from comode.data.frames import ClipSpec
from comode.data.loader import collate
from comode.data.transforms import INPUT_NORMALIZATION, AugmentSpec, augment_batch

__all__ = ["EpochDataset", "Augment", "TrainingData", "clip_spec", "open_store_data"]


class EpochDataset(Protocol):
    """What the loop needs from a dataset (``comode.data.dataset.PretrainDataset`` is one).

    ``dataset[i]`` is a dict: ``clip`` (3, T, h, w), ``iframe`` (3, h, w), ``mv_future``
    float32 (2, T_m, gh, gw), ``mv_negatives`` float32 (K, 2, T_m, gh, gw), ``label`` int,
    ``video_index`` int; its randomness must be a function of (seed, epoch, i).

    The loader's worker processes persist across epochs (see :class:`comode.data.loader.RunLoader`), so
    ``set_epoch`` must reach copies of the dataset in other processes, and ``skipped`` must
    count their skips too: PretrainDataset keeps both in shared memory.  A plain attribute
    would leave every worker drawing epoch 0's clips for the whole run.
    """

    skipped: int  # videos that could not be read so far, in any process (replaced by others)

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    def set_epoch(self, epoch: int) -> None: ...


Augment = Callable[..., Mapping[str, Tensor]]

"""augment(batch on the device, *, generator, train) -> float32 ``clip`` (B, 3, T, H, W),
``iframe`` (B, 3, H, W), ``mv_future`` (B, 2, T_m, H_m, W_m), ``mv_negatives``
(B, K, 2, T_m, H_m, W_m); every random draw from ``generator``."""


@dataclass(frozen=True)
class TrainingData:
    """Everything the loop takes from the data side.

    Attributes:
        dataset: an :class:`EpochDataset`.
        augment: an :data:`Augment` (batched, runs on the training device).
        num_classes: labels lie in [0, num_classes) (the supervised_aux classifier).
        input_normalization: how ``augment`` maps pixels to network input; copied into
            exported backbones so users feed them the same way.
        collate: the DataLoader's collate_fn (:func:`comode.data.loader.collate` for store
            samples); None = torch's default_collate.
    """

    dataset: EpochDataset
    augment: Augment
    num_classes: int
    input_normalization: Mapping[str, Any]
    # How the loader stacks this source's samples into a batch; None = torch's default_collate.
    collate: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None


def clip_spec(config: DataConfig) -> ClipSpec:
    """Which frames a pretraining sample of ``config`` uses (clip length and stride, motion window)."""
    return ClipSpec(frames=config.clip_frames, stride=config.clip_stride, motion_window=config.motion_window)


def open_store_data(config: DataConfig, store: str, *, seed: int) -> TrainingData:
    """The training data of a comode store: :class:`~comode.data.dataset.PretrainDataset`
    samples, augmented on the training device by :func:`~comode.data.transforms.augment_batch`."""
    dataset = PretrainDataset(
        store,
        split=config.split,
        subset=config.subset,
        seed=seed,
        size=config.size,
        mv_size=config.mv_size,
        spec=clip_spec(config),
        iframe_mv=config.iframe_mv,
        missing_mv=config.missing_mv,
        camera_compensation=config.camera_compensation,
        negative_min_distance=config.negative_min_distance,
    )
    augment_spec = AugmentSpec(size=config.size, mv_size=config.mv_size, scale=(config.crop_scale, 1.0))
    return TrainingData(
        dataset=dataset,
        augment=functools.partial(augment_batch, spec=augment_spec),
        num_classes=dataset.num_classes,
        input_normalization=INPUT_NORMALIZATION,
        collate=collate,
    )
