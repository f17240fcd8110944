"""Video-level features: the mean of the V-Network's pooled features over 10 test clips.

A video's representation (paper, VCOP, CoCLR protocol):

1. the 10 clips of :func:`comode.data.frames.sliding_window_indices` (16 frames,
   stride 4, uniformly spread; short videos repeat their last frame),
2. each clip decoded from the store at its stored size (short side 128), centre-cropped
   to a square of 112/128 of the short side and resized to ``size`` (112): exactly the
   ``train=False`` view of :func:`comode.data.transforms.augment_batch`, then ImageNet
   normalisation (:data:`comode.data.transforms.INPUT_NORMALIZATION`),
3. the V-Network in eval mode (BatchNorm running statistics), its (B, C, T', H', W') map
   global-average-pooled to (B, C),
4. the mean over the 10 clips: (C,).

Batched (several videos' clips per forward pass), on CUDA when present, decoding in
DataLoader workers.  A video that cannot be read or decoded is not dropped silently: it is
listed in ``FeatureSet.failed`` with the reason, and reports give both counts.

Cache: ``<cache_dir>/<key>.npz`` where ``key`` hashes the model's identity (checkpoint
SHA-256, or backbone/width/seed of a random init), the store URL, the evaluated videos
(id, frame count, label), the clip protocol and the crop.  Any change gives a new file;
a run with failures is not cached (a retry may succeed).

Shape alphabet: B batch (clips), C channels, T time, H / W height / width, N videos.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from comode.data.clips import VideoClips, usable_batches
from comode.data.frames import WindowSpec
from comode.data.transforms import centre_crop_boxes, crop_resize, normalize
from comode.store import Store

__all__ = [
    "FEATURES_FORMAT",
    "FeatureSet",
    "prepare_clips",
    "pooled_features",
    "forward_in_passes",
    "Inference",
    "extract_features",
    "extract_features_of_many",
    "FeatureJob",
    "cached_features",
    "cached_features_of_many",
    "feature_key",
    "canonical_url",
    "store_identity",
    "default_device",
]

FEATURES_FORMAT = "comode.features/1"
# Centre crop of the evaluation view: 112 of the short side 128 (train=False of augment_batch).
EVAL_CROP = 112 / 128


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Inference:
    """How a V-Network is run over a store's videos (the model and the videos aside)."""

    # The clips of each video: 10 windows of 16 frames at stride 4 unless the model was trained on others.
    window: WindowSpec = WindowSpec()
    # Clip side after the centre crop (the side the model was trained on).
    size: int = 112
    # None: CUDA when present, else the CPU.
    device: torch.device | None = None
    # Videos per forward pass (x window.clips clips).
    videos_per_batch: int = 8
    # DataLoader processes decoding clips (0: in this process).
    workers: int = 0


@dataclass
class FeatureSet:
    """Features of the videos that could be read, and the ones that could not.

    Attributes:
        video_ids: (N,) evaluated videos, in the order asked for (failed ones left out).
        labels: (N,) int64 class labels from the store.
        features: (N, C) float32 video features (mean over the clips).
        failed: video id -> reason, for videos asked for but not evaluated.
    """

    video_ids: list[str]
    labels: np.ndarray
    features: np.ndarray
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.video_ids)

    def save(self, path: Path, *, key: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(
            temporary,
            format=np.array(FEATURES_FORMAT),
            key=np.array(key),
            video_ids=np.array(self.video_ids, dtype=str),
            labels=self.labels,
            features=self.features,
        )
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: Path, *, key: str) -> "FeatureSet | None":
        """The cached set, or None if the file is absent, unreadable or for another key."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != FEATURES_FORMAT or str(data["key"]) != key:
                    return None
                return cls(
                    video_ids=[str(v) for v in data["video_ids"]],
                    labels=data["labels"].astype(np.int64),
                    features=data["features"].astype(np.float32),
                )
        except (OSError, KeyError, ValueError):
            return None


def prepare_clips(clips: Tensor, *, size: int = 112, crop: float = EVAL_CROP) -> Tensor:
    """(B, 3, T, H, W) uint8 -> (B, 3, T, size, size) float32, centre crop + normalisation."""
    b, _, t, h, w = clips.shape
    boxes = centre_crop_boxes(b, h, w, fraction=crop, device=clips.device)
    y0, x0, side, _ = (int(v) for v in boxes[0].tolist())
    if side == size:  # no resize (the default 112 of 128): the bilinear resample is a plain slice
        window = clips[..., y0 : y0 + side, x0 : x0 + side]
        return normalize(window.to(torch.float32).div_(255.0), channel_dim=1)
    frames = clips.to(torch.float32).div_(255.0).flatten(1, 2)  # (B, 3T, H, W)
    no_flip = torch.zeros(b, dtype=torch.bool, device=clips.device)
    out = crop_resize(frames, boxes, size=size, flip=no_flip).unflatten(1, (3, t))
    return normalize(out, channel_dim=1)


# Inference on the CPU runs this many clips per forward pass: the activations of a few clips
# stay in cache: 8 clips per pass instead of 80 nearly doubled CPU inference throughput
# (docs/performance.md).  GPUs get the whole batch.
CPU_CLIPS_PER_PASS = 8


def forward_in_passes(module: nn.Module, clips: Tensor) -> Tensor:
    """``module(clips)`` for an inference batch (B, ...), in passes of CPU_CLIPS_PER_PASS on the
    CPU.  Only for modules whose outputs do not mix the batch (eval-mode BatchNorm)."""
    if clips.device.type != "cpu" or clips.shape[0] <= CPU_CLIPS_PER_PASS:
        return module(clips)
    return torch.cat([module(part) for part in clips.split(CPU_CLIPS_PER_PASS)])


def pooled_features(vnet: nn.Module, clips: Tensor) -> Tensor:
    """(B, 3, T, S, S) normalised clips -> (B, C): the V-Network's map, global-average-pooled."""
    return forward_in_passes(vnet, clips).mean(dim=(2, 3, 4))


@torch.no_grad()
def extract_features(
    vnet: nn.Module,
    store_url: str,
    video_ids: Sequence[str],
    inference: Inference = Inference(),
    *,
    on_videos: Callable[[int], None] | None = None,
) -> FeatureSet:
    """Features of ``video_ids`` (see the module docstring); failed videos are listed, not raised.

    ``vnet`` is moved to the inference device and put in eval mode here; ``on_videos`` is
    called with the number of videos finished after every batch (progress).
    """
    return extract_features_of_many([vnet], store_url, video_ids, inference, on_videos=on_videos)[0]


@torch.no_grad()
def extract_features_of_many(
    vnets: Sequence[nn.Module],
    store_url: str,
    video_ids: Sequence[str],
    inference: Inference = Inference(),
    *,
    on_videos: Callable[[int], None] | None = None,
) -> list[FeatureSet]:
    """One :class:`FeatureSet` per network of ``vnets``, from one pass over the videos.

    Each batch of clips is decoded and prepared once and shown to every network in turn:
    decoding and preparing cost about a third of a small network's feature pass on the CPU,
    and `evaluate ablation` scores six random-init floor networks on the same clips.  Every
    network sees exactly the batches :func:`extract_features` would show it alone.
    """
    window, size = inference.window, inference.size
    device = inference.device or default_device()
    vnets = [vnet.to(device).eval() for vnet in vnets]
    dataset = VideoClips(store_url, video_ids, window=window)
    features: list[dict[int, np.ndarray]] = [{} for _ in vnets]
    labels: dict[int, int] = {}
    failed: dict[str, str] = {}
    pin_memory = device.type == "cuda"
    batch_size, workers = inference.videos_per_batch, inference.workers
    for good, batch in usable_batches(
        dataset, batch_size=batch_size, workers=workers, failures=failed, pin_memory=pin_memory
    ):
        if good:
            # Identical clips (videos shorter than one clip: all 10 are the same) run once.
            unique = [np.unique(item["frames"], axis=0, return_index=True, return_inverse=True) for item in good]
            clips = torch.cat([item["clips"][first] for item, (_, first, _) in zip(good, unique)])
            prepared = prepare_clips(clips.to(device, non_blocking=True), size=size)
            for vnet, features_of_net in zip(vnets, features):
                pooled = pooled_features(vnet, prepared).float()
                start = 0
                for item, (rows, _, inverse) in zip(good, unique):
                    per_clip = pooled[start : start + len(rows)][
                        torch.as_tensor(inverse.reshape(-1), device=pooled.device)
                    ]
                    features_of_net[item["index"]] = per_clip.mean(dim=0).cpu().numpy()  # (C,): mean over the clips
                    start += len(rows)
            for item in good:
                labels[item["index"]] = item["label"]
        if on_videos is not None:
            on_videos(batch)
    order = sorted(labels)
    return [
        FeatureSet(
            video_ids=[video_ids[i] for i in order],
            labels=np.array([labels[i] for i in order], dtype=np.int64),
            features=(
                np.stack([features_of_net[i] for i in order]).astype(np.float32)
                if order
                else np.zeros((0, getattr(vnet, "out_channels", 0)), np.float32)
            ),
            failed=dict(failed),
        )
        for vnet, features_of_net in zip(vnets, features)
    ]


def feature_key(*, model: dict[str, Any], store: Store, video_ids: Sequence[str], window: WindowSpec, size: int) -> str:
    """Hex key of a feature set: model identity, store URL, videos (id, frames, label), protocol."""
    attrs = store.video_attrs()
    videos = [(v, attrs.get(v, {}).get("frames"), attrs.get(v, {}).get("label")) for v in video_ids]
    identity = {
        "format": FEATURES_FORMAT,
        "model": {k: v for k, v in model.items() if k != "path"} if model.get("sha256") else model,
        "store": canonical_url(store.url),
        "videos": hashlib.sha256(json.dumps(videos).encode()).hexdigest(),
        "window": asdict(window),
        "size": size,
        "crop": EVAL_CROP,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def canonical_url(url: str) -> str:
    """A store URL as reports and cache keys name it: remote URLs as given, local paths absolute."""
    return url if "://" in url else str(Path(url).resolve())


def store_identity(store: Store, classes: Sequence[str], label_set: str | None = None) -> dict[str, Any]:
    """What a report says about the store it evaluated on (its ``store`` field)."""
    return {
        "url": canonical_url(store.url),
        "dataset": store.dataset.get("name"),
        "classes": len(classes),
        "label_set": label_set,
    }


@dataclass
class FeatureJob:
    """One network for :func:`cached_features_of_many`: built by ``factory`` only on a cache
    miss, identified by ``model`` (:meth:`EvaluatedNetwork.describe`), cached under ``cache_dir``."""

    factory: Callable[[], nn.Module]
    model: dict[str, Any]
    cache_dir: Path | None


def cached_features(
    vnet_factory: Callable[[], nn.Module],
    *,
    model: dict[str, Any],
    store: Store,
    video_ids: Sequence[str],
    cache_dir: Path | None,
    inference: Inference = Inference(),
    on_videos: Callable[[int], None] | None = None,
) -> tuple[FeatureSet, bool]:
    """(features, came_from_cache).  ``vnet_factory`` is only called on a cache miss.

    ``model`` is the model's identity (:meth:`EvaluatedNetwork.describe`); a checkpoint is keyed
    by its bytes' SHA-256, not its path, so a copied checkpoint hits the same cache.
    """
    job = FeatureJob(factory=vnet_factory, model=model, cache_dir=cache_dir)
    return cached_features_of_many([job], store=store, video_ids=video_ids, inference=inference, on_videos=on_videos)[0]


def cached_features_of_many(
    jobs: Sequence[FeatureJob],
    *,
    store: Store,
    video_ids: Sequence[str],
    inference: Inference = Inference(),
    on_videos: Callable[[int], None] | None = None,
) -> list[tuple[FeatureSet, bool]]:
    """(features, came_from_cache) of every job; the networks missing from their caches are
    run together, in one pass over the videos (:func:`extract_features_of_many`)."""
    key = {"store": store, "video_ids": video_ids, "window": inference.window, "size": inference.size}
    paths = [
        job.cache_dir / f"{feature_key(model=job.model, **key)}.npz" if job.cache_dir is not None else None
        for job in jobs
    ]
    results: list[tuple[FeatureSet, bool] | None] = []
    for path in paths:
        cached = FeatureSet.load(path, key=path.stem) if path is not None and path.exists() else None
        results.append((cached, True) if cached is not None and cached.video_ids == list(video_ids) else None)
    missing = [i for i, result in enumerate(results) if result is None]
    if not missing:
        if on_videos is not None:
            on_videos(len(video_ids))
    else:
        vnets = [jobs[i].factory() for i in missing]
        for i, features in zip(
            missing, extract_features_of_many(vnets, store.url, video_ids, inference, on_videos=on_videos)
        ):
            path = paths[i]
            if path is not None and not features.failed:
                features.save(path, key=path.stem)
            results[i] = (features, False)
    return [result for result in results if result is not None]
