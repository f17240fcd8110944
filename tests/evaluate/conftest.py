"""Shared fixtures of the evaluation tests: a tiny labelled store and a tiny checkpoint.

The store is a ``sample``-format dataset (folders + labels.csv, split "1" = the CSV's
train/test): primary labels "motion" (the texture moves right or down) and an extra label
set "texture" with one unlabelled video; long and short videos (10 frames: shorter than
one 61-frame clip).  Videos are small (170x128) to keep
extraction to a few seconds.
"""

from __future__ import annotations

import pytest
import torch

from comode.extract.datasets import load_dataset
from comode.extract.executors import make_executor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from tests.videos import translating_frames, write_video

VIDEOS = {  # path: (frames, dx, dy, texture label; "" = none)
    "train/right/a.avi": (80, 2, 0, "fine"),
    "train/right/b.avi": (40, 3, 0, "coarse"),
    "train/right/g.avi": (64, 1, 0, "fine"),
    "train/down/c.avi": (70, 0, 2, "coarse"),
    "train/down/d.avi": (30, 0, 3, "fine"),
    "train/down/h.avi": (62, 0, 1, ""),
    "test/right/e.avi": (66, 2, 0, "fine"),
    "test/down/f.avi": (10, 0, 2, "coarse"),
    "test/down/i.avi": (50, 0, 1, "coarse"),
}
BACKBONE, WIDTH = "r3d_18", 0.125


@pytest.fixture(scope="session")
def eval_store(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("eval_videos")
    rows = ["path,split,motion,texture"]
    for i, (relative, (frames, dx, dy, texture)) in enumerate(VIDEOS.items()):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, translating_frames(frames=frames, width=170, height=128, dx=dx, dy=dy, seed=i))
        split, motion = relative.split("/")[:2]
        rows.append(f"{relative},{split},{motion},{texture}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    url = str(tmp_path_factory.mktemp("eval_store") / "eval.zarr")
    summary = run_extraction(load_dataset("sample", root), url, ExtractSettings(), make_executor(workers=0))
    assert summary.ok, summary.failures
    return url


def make_checkpoint(path, *, seed: int = 1, backbone: str = BACKBONE, width: float = WIDTH):
    """A checkpoint in the pretraining format (what load_backbone / export read), random weights."""
    from comode.data.transforms import INPUT_NORMALIZATION
    from comode.models.backbones import build_backbone
    from comode.models.config import ModelConfig
    from comode.train.checkpoint import save_checkpoint
    from comode.train.config import PretrainConfig, config_to_dict
    from comode.version import __version__

    torch.manual_seed(seed)
    vnet = build_backbone(backbone, width_multiplier=width)
    config = PretrainConfig(model=ModelConfig(backbone=backbone, width_multiplier=width))
    return save_checkpoint(
        {
            "comode_version": __version__,
            "task": "pretrain",
            "config": config_to_dict(config),
            "num_classes": 0,
            "input_normalization": dict(INPUT_NORMALIZATION),
            "model": {f"vnet.{k}": v for k, v in vnet.state_dict().items()},
            "step": 7,
            "epoch": 1,
        },
        path,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "last.pt")


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    """One feature cache for the tests that evaluate tiny_checkpoint at size 64: extract once."""
    return tmp_path_factory.mktemp("feature_cache")
