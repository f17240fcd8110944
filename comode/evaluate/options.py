"""A split's features for an evaluation, and what its caller chooses about them.

Retrieval, the linear probe and the ablation's cells all score the same features
(:mod:`comode.evaluate.features`): the train and test videos of one split, from one model.
:class:`FeatureOptions` carries the choices beyond the checkpoint (which network a random
init builds, the clip side, the cache, batches, device), and :func:`split_features` turns a
checkpoint and those choices into :class:`SplitFeatures`, with what the reports say about them.
:func:`fill_feature_caches` computes several networks' features ahead, in one pass.

Shape alphabet: N videos, C channels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from comode.evaluate.features import (
    FeatureJob,
    FeatureSet,
    Inference,
    cached_features,
    cached_features_of_many,
    store_identity,
)
from comode.evaluate.pathway_view import backbone_pathways, pathway_view
from comode.evaluate.source import ClipGeometry, ModelSource
from comode.store import Store, open_store
from comode.train.frames import WindowSpec

__all__ = ["FeatureOptions", "SplitFeatures", "split_features", "relabel", "fill_feature_caches"]


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
    # Test clips per video, spread evenly over it (the paper's protocol: 10).  Fewer is
    # proportionally faster, for quick looks at large sets; reports record the number.
    clips: int = WindowSpec.clips
    # Feature cache (None: <out_dir>/features).
    cache_dir: str | Path | None = None
    # As in Inference; device as a string ("cpu", "cuda", "cuda:1"; None: CUDA when present).
    videos_per_batch: int = 8
    workers: int = 0
    device: str | None = None
    show_progress: bool = False
    # Which pathway's feature a multi-pathway network is scored on: "both" (each pathway's
    # part L2-normalised, side by side), "rgb" or "diff" (comode.evaluate.pathway_view).
    feature: str = "both"

    def with_clips(self, clips: int) -> "FeatureOptions":
        """The same choices on ``clips`` test clips per video."""
        return replace(self, clips=clips)

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
            window=WindowSpec(clips=self.clips, frames=geometry.frames, stride=geometry.stride),
            size=geometry.size if self.size is None else self.size,
            device=torch.device(self.device) if self.device else None,
            videos_per_batch=self.videos_per_batch,
            workers=self.workers,
        )


@dataclass
class SplitFeatures:
    """Train and test features of one split plus what reports say about them."""

    train: FeatureSet
    test: FeatureSet
    classes: list[str]
    model: dict[str, Any]  # ModelSource.describe()
    store_info: dict[str, Any]  # url, dataset name, classes
    protocol: dict[str, Any]  # clips, frames, stride, size, crop
    counts: dict[str, int]  # asked / evaluated / failed per side, from_cache
    failed: dict[str, str]

    def report_fields(self) -> dict[str, Any]:
        """What every report of these features says about them (``write_report``'s model, store, failed)."""
        return {"model": self.model, "store": self.store_info, "failed": self.failed}


def relabel(features: FeatureSet, store: Store, label_set: str | None) -> tuple[FeatureSet, int]:
    """The same features with labels from ``label_set`` (None: the primary labels); videos
    without a label there (-1) are left out.  Returns (relabelled set, number left out)."""
    labels = features.labels if label_set is None else np.array(store.labels(features.video_ids, label_set))
    keep = labels >= 0
    kept = FeatureSet(
        video_ids=[v for v, k in zip(features.video_ids, keep) if k],
        labels=labels[keep],
        features=features.features[keep],
        failed=features.failed,
    )
    return kept, int((~keep).sum())


def split_features(
    store_url: str,
    checkpoint: str | Path | None,
    options: FeatureOptions = FeatureOptions(),
    *,
    split: str,
    out_dir: str | Path,
    label_set: str | None = None,
    needed_by: str = "this evaluation",
) -> SplitFeatures:
    """Features of the train and test videos of ``split`` for ``checkpoint``'s model (cached).

    ``checkpoint``: a training checkpoint, an exported backbone, or "random" (the network
    ``options`` describe).  The clips are the ones the network was trained on (frames,
    stride, side; ``options.size`` changes the side), ``options.clips`` per video.  ``options.cache_dir``
    defaults to ``out_dir/features``.  ``label_set``: evaluate against one of the store's
    extra label sets (``dataset.label_sets``, e.g. "scene" of the sample set) instead of the
    primary labels; the features (and their cache) are the same.  Videos without a label
    (-1, in the primary labels or the label set) are left out and counted (``unlabelled``).

    Raises:
        ValueError: unknown split or label set, bad checkpoint, or a side of the split with no
            usable video (``needed_by`` names who needs both).
    """
    from comode.progress import Progress

    source = options.source(checkpoint)
    inference = options.inference(source.geometry)
    window, size = inference.window, inference.size
    store = open_store(store_url).snapshot()  # listed 5-7 times below: one scan
    train_ids, test_ids = store.split(split)
    classes = store.label_classes(label_set)
    model = source.describe()
    cache = Path(options.cache_dir) if options.cache_dir is not None else Path(out_dir) / "features"
    built: list[nn.Module] = []

    def factory() -> nn.Module:  # build the network once, only on a cache miss
        if not built:
            built.append(source.build())
        return built[0]

    sets, from_cache = {}, {}
    with Progress("features", total=len(train_ids) + len(test_ids), enabled=options.show_progress) as bar:
        for side, ids in (("train", train_ids), ("test", test_ids)):
            sets[side], from_cache[side] = cached_features(
                factory,
                model=model,
                store=store,
                video_ids=ids,
                cache_dir=cache,
                inference=inference,
                on_videos=bar.advance,
            )
    unlabelled = 0
    pathways = backbone_pathways(model["backbone"])
    for side in ("train", "test"):  # unlabelled videos (-1) cannot be scored: left out, counted
        sets[side], left_out = relabel(sets[side], store, label_set)
        unlabelled += left_out
        # The cache holds the whole feature; the view is taken here, for every evaluation alike.
        sets[side].features = pathway_view(sets[side].features, pathways, options.feature)
    failed = {**sets["train"].failed, **sets["test"].failed}
    # Videos of the split whose extraction did not complete are not in the store's usable
    # set; count them so a report never hides them.
    in_split = store.video_ids(status=None, split=split)
    counts = {
        "split_videos_not_complete": len(in_split) - len(train_ids) - len(test_ids),
        "train_videos": len(train_ids),
        "train_evaluated": sets["train"].count,
        "test_videos": len(test_ids),
        "test_evaluated": sets["test"].count,
        "failed": len(failed),
        "features_from_cache": int(from_cache["train"] and from_cache["test"]),
    }
    counts["unlabelled"] = unlabelled
    store_info = store_identity(store, classes, label_set)
    protocol = {
        "clips_per_video": window.clips,
        "clip_frames": window.frames,
        "clip_stride": window.stride,
        "size": size,
        "crop": "centre, 112/128 of the short side",
        "pooling": "global average, mean over clips",
        "pathways": list(pathways),
        "feature": options.feature,
    }
    if sets["train"].count == 0 or sets["test"].count == 0:
        raise ValueError(
            f"split {split!r} has {sets['train'].count} usable train and {sets['test'].count} usable test videos; "
            f"{needed_by} needs both"
        )
    return SplitFeatures(
        train=sets["train"],
        test=sets["test"],
        classes=classes,
        model=model,
        store_info=store_info,
        protocol=protocol,
        counts=counts,
        failed=failed,
    )


def fill_feature_caches(
    store_url: str, checkpoints_and_options: Sequence[tuple[str | Path | None, FeatureOptions]], *, split: str
) -> None:
    """Fill the feature caches of several networks in one pass over the videos of ``split``.

    Every ``(checkpoint, options)`` pair is what a later :func:`split_features` call will
    ask for; it then reads the features from ``options.cache_dir`` (which must be set).
    Networks that share a clip protocol are run on each decoded batch in turn
    (:func:`comode.evaluate.features.cached_features_of_many`), so `evaluate ablation`
    decodes the store once for its six random-init floors instead of six times.
    """
    from comode.progress import Progress

    if any(options.cache_dir is None for _, options in checkpoints_and_options):
        raise ValueError("fill_feature_caches needs a cache_dir in every FeatureOptions")
    store = open_store(store_url).snapshot()
    train_ids, test_ids = store.split(split)
    groups: dict[str, tuple[Inference, list[FeatureJob], bool]] = {}
    for checkpoint, options in checkpoints_and_options:
        source = options.source(checkpoint)
        inference = options.inference(source.geometry)
        protocol = json.dumps([asdict(inference.window), inference.size, str(inference.device)])
        _, jobs, show = groups.setdefault(protocol, (inference, [], options.show_progress))
        jobs.append(FeatureJob(factory=source.build, model=source.describe(), cache_dir=Path(options.cache_dir)))
    for inference, jobs, show in groups.values():
        with Progress("features", total=len(train_ids) + len(test_ids), enabled=show) as bar:
            for ids in (train_ids, test_ids):
                cached_features_of_many(jobs, store=store, video_ids=ids, inference=inference, on_videos=bar.advance)
