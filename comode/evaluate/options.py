"""A split's features for an evaluation, what its caller chooses about them, and where it writes.

Retrieval, the linear probe and the ablation's cells all score the same features
(:mod:`comode.evaluate.features`): the train and test videos of one split, from one model.
:class:`FeatureOptions` carries the choices beyond the checkpoint (which network a random
init builds, the clip side, the cache, batches, device), and :func:`split_features` turns a
checkpoint and those choices into :class:`SplitFeatures`, with what the reports say about them.
:func:`fill_feature_caches` computes several networks' features ahead, in one pass.
:func:`output_folder` is where an evaluation writes its report and :data:`EVALUATE_LOG`
unless told otherwise (the commands' ``--out``).

Shape alphabet: N videos, C channels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from comode.data.frames import WindowSpec
from comode.evaluate.choices import FeatureChoices
from comode.evaluate.features import (
    FeatureJob,
    FeatureSet,
    Inference,
    cached_features,
    cached_features_of_many,
    store_identity,
)
from comode.evaluate.network import ClipGeometry, EvaluatedNetwork, names_random_init
from comode.evaluate.pathway_view import backbone_pathways, pathway_view
from comode.models.config import ModelConfig
from comode.progress import Progress
from comode.store import Store, open_store

__all__ = [
    "FeatureOptions",
    "SplitFeatures",
    "split_features",
    "relabel",
    "fill_feature_caches",
    "check_device",
    "EVALUATE_LOG",
    "output_folder",
    "features_output_folder",
]

EVALUATE_LOG = "evaluate.log"  # in every evaluation's output folder, beside its report


@dataclass(frozen=True)
class FeatureOptions(FeatureChoices):
    """The feature choices shared by every evaluation (their fields and defaults:
    :class:`~comode.evaluate.choices.FeatureChoices`), and the network and inference they make."""

    @classmethod
    def random_init_of(cls, pretraining: Any = None, **choices: Any) -> "FeatureOptions":
        """These ``choices``; the network of a random init (``backbone``, ``width_multiplier``)
        and its clip default to those of ``pretraining`` (a pretraining config), or without one
        to the paper's (ModelConfig's network, ClipGeometry's clip)."""
        model = ModelConfig() if pretraining is None else pretraining.model
        backbone, width = choices.pop("backbone", None), choices.pop("width_multiplier", None)
        return cls(
            backbone=backbone or model.backbone,
            width_multiplier=model.width_multiplier if width is None else width,
            geometry=None if pretraining is None else ClipGeometry.of_config(pretraining.data),
            **choices,
        )

    def network(self, checkpoint: str | Path | None) -> EvaluatedNetwork:
        """The model behind ``checkpoint`` (a file, or "random" built from these options)."""
        return EvaluatedNetwork.parse(
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


def check_device(device: str | None) -> None:
    """Whether this machine can run an evaluation on ``device`` (None: CUDA when present, else the CPU).

    Raises:
        ValueError: ``device`` is not a torch device, or it is CUDA and CUDA is not available.
    """
    if device is None:
        return
    try:
        torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device (cuda, cuda:1, cpu)") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")


def output_folder(
    out: str | Path | None,
    checkpoint: str | Path | None,
    store: str,
    *,
    backbone: str,
    width_multiplier: float,
    seed: int,
    kind: str = "eval",
    label_set: str | None = None,
) -> Path:
    """Where an evaluation of ``checkpoint`` on ``store`` writes: ``out`` when given, else
    <checkpoint folder>/<kind>/<checkpoint stem>/<store name>[-<label set>] (so epoch_010.pt and
    last.pt of one run keep separate reports), or, for a random init, the folder named by its
    network (``backbone``, ``width_multiplier``, ``seed``): runs/random-<backbone>-x<width>-seed<seed>/<kind>/<store name>[-<label set>]."""
    if out is not None:
        return Path(out)
    store_name = Path(store.rstrip("/")).stem or "store"
    if names_random_init(checkpoint):
        base = Path("runs") / f"random-{backbone}-x{width_multiplier:g}-seed{seed}" / kind
    else:
        base = Path(checkpoint).parent / kind / Path(checkpoint).stem
    return base / (f"{store_name}-{label_set}" if label_set else store_name)


def features_output_folder(
    out: str | Path | None,
    checkpoint: str | Path | None,
    store: str,
    features: FeatureChoices,
    label_set: str | None = None,
) -> Path:
    """:func:`output_folder` of an evaluation of ``features`` (retrieval, the linear probe): a
    random init is named by their network, and a pathway view other than "both" gets its own
    folder, so reports of --feature rgb and of both never overwrite each other."""
    view = None if features.feature == "both" else f"{features.feature}-feature"
    suffix = "-".join(part for part in (label_set, view) if part) or None
    network = dict(backbone=features.backbone, width_multiplier=features.width_multiplier, seed=features.seed)
    return output_folder(out, checkpoint, store, label_set=suffix, **network)


@dataclass
class SplitFeatures:
    """Train and test features of one split plus what reports say about them."""

    train: FeatureSet
    test: FeatureSet
    classes: list[str]
    model: dict[str, Any]  # EvaluatedNetwork.describe()
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

    network = options.network(checkpoint)
    inference = options.inference(network.geometry)
    window, size = inference.window, inference.size
    store = open_store(store_url).snapshot()  # listed 5-7 times below: one scan
    train_ids, test_ids = store.split(split)
    classes = store.label_classes(label_set)
    model = network.describe()
    cache = Path(options.cache_dir) if options.cache_dir is not None else Path(out_dir) / "features"
    built: list[nn.Module] = []

    def factory() -> nn.Module:  # build the network once, only on a cache miss
        if not built:
            built.append(network.build())
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

    if any(options.cache_dir is None for _, options in checkpoints_and_options):
        raise ValueError("fill_feature_caches needs a cache_dir in every FeatureOptions")
    store = open_store(store_url).snapshot()
    train_ids, test_ids = store.split(split)
    groups: dict[str, tuple[Inference, list[FeatureJob], bool]] = {}
    for checkpoint, options in checkpoints_and_options:
        network = options.network(checkpoint)
        inference = options.inference(network.geometry)
        protocol = json.dumps([asdict(inference.window), inference.size, str(inference.device)])
        _, jobs, show = groups.setdefault(protocol, (inference, [], options.show_progress))
        jobs.append(FeatureJob(factory=network.build, model=network.describe(), cache_dir=Path(options.cache_dir)))
    for inference, jobs, show in groups.values():
        with Progress("features", total=len(train_ids) + len(test_ids), enabled=show) as bar:
            for ids in (train_ids, test_ids):
                cached_features_of_many(jobs, store=store, video_ids=ids, inference=inference, on_videos=bar.advance)
