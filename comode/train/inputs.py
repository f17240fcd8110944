"""What a pretraining run takes from the data side, and the adapter that builds it from a
comode store: the ONE place that knows :mod:`comode.train.data`'s names.

A custom data source plugs in by building a :class:`TrainingData` itself (the tests do,
with an in-memory dataset); the run never imports the store or the decoder.

Shape alphabet: B batch, T time, H height, W width, K negative motion windows,
gh / gw motion-vector grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from torch import Tensor

from comode.train.config import PretrainConfig
from comode.train.frames import ClipSpec

__all__ = ["EpochDataset", "Augment", "TrainingData", "clip_spec", "open_store_data"]


class EpochDataset(Protocol):
    """What the loop needs from a dataset (``comode.train.data.PretrainDataset`` is one).

    ``dataset[i]`` is a dict: ``clip`` (3, T, h, w), ``iframe`` (3, h, w), ``mv_future``
    float32 (2, T_m, gh, gw), ``mv_negatives`` float32 (K, 2, T_m, gh, gw), ``label`` int,
    ``video_index`` int; its randomness must be a function of (seed, epoch, i).

    The loader's worker processes persist across epochs (see :class:`comode.train.loader.RunLoader`), so
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
        collate: the DataLoader's collate_fn (:func:`comode.train.loader.collate` for store
            samples); None = torch's default_collate.
    """

    dataset: EpochDataset
    augment: Augment
    num_classes: int
    input_normalization: Mapping[str, Any]
    # How the loader stacks this source's samples into a batch; None = torch's default_collate.
    collate: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None


def clip_spec(config: PretrainConfig) -> ClipSpec:
    """Which frames a pretraining sample of ``config`` uses (clip length and stride, motion window)."""
    return ClipSpec(
        frames=config.data.clip_frames, stride=config.data.clip_stride, motion_window=config.data.motion_window
    )


def open_store_data(config: PretrainConfig, store: str) -> TrainingData:
    """The training data of a comode store, through ``comode.train.data``.

    This adapter is the only code coupled to the data module's names
    (``PretrainDataset``, ``augment_batch``, ``INPUT_NORMALIZATION``).
    """
    from comode.train import data as data_module
    from comode.train.loader import collate

    dataset = data_module.PretrainDataset(
        store,
        split=config.data.split,
        subset=config.data.subset,
        seed=config.seed,
        size=config.data.size,
        mv_size=config.data.mv_size,
        spec=clip_spec(config),
        iframe_mv=config.data.iframe_mv,
        missing_mv=config.data.missing_mv,
        camera_compensation=config.data.camera_compensation,
        negative_min_distance=config.data.negative_min_distance,
    )
    augment_spec = data_module.AugmentSpec(
        size=config.data.size, mv_size=config.data.mv_size, scale=(config.data.crop_scale, 1.0)
    )
    return TrainingData(
        dataset=dataset,
        augment=functools.partial(data_module.augment_batch, spec=augment_spec),
        num_classes=dataset.num_classes,
        input_normalization=data_module.INPUT_NORMALIZATION,
        collate=collate,
    )
