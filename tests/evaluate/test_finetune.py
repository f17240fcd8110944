"""Finetuning: end to end from a checkpoint and from scratch, resume equals an uninterrupted run."""

import json

import pytest
import torch

from comode.data.frames import RandomClipIndices, WindowSpec
from comode.evaluate.finetune import _STREAM_CLIPS, augment_clips, load_finetune_config, run_finetune
from comode.store import open_store
from comode.train.checkpoint import load_checkpoint
from comode.train.config import ConfigError

# size 64: 3x fewer pixels than 112, nothing here depends on it.
TINY = [
    "epochs=2",
    "batch_size=4",
    "workers=0",
    "test_clips=10",
    "test_videos_per_batch=3",
    "lr_per_sample=0.0025",
    "size=64",
]


def test_config_yaml_and_overrides(tmp_path):
    config = load_finetune_config("configs/evaluate/finetune_hmdb51.yaml", ["epochs=3"])
    assert config.lr == pytest.approx(0.0002 * 32) and config.dropout == 0.3 and config.epochs == 3
    with pytest.raises(ConfigError, match="unknown config key"):
        load_finetune_config(None, ["epoch=3"])
    with pytest.raises(ConfigError, match="dropout"):
        load_finetune_config(None, ["dropout=1.5"])


def test_random_training_clip_and_augmentation():
    clip = RandomClipIndices(key=(0, _STREAM_CLIPS, 0), window=WindowSpec())
    long, short = clip(200, 3), clip(20, 3)
    assert long.shape == (1, 16) and (long[0, 1:] - long[0, :-1] == 4).all() and long.max() < 200
    assert short[0].tolist() == [0, 4, 8, 12, 16] + [19] * 11
    assert (clip(200, 3) == long).all()  # a pure function of (seed, epoch, index)
    other_epochs = [RandomClipIndices(key=(0, _STREAM_CLIPS, e), window=WindowSpec())(200, 3) for e in range(1, 4)]
    assert any((other != long).any() for other in other_epochs)
    clips = torch.randint(0, 256, (2, 3, 16, 128, 170), dtype=torch.uint8)
    a = augment_clips(clips, generator=torch.Generator().manual_seed(1))
    b = augment_clips(clips, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 3, 16, 112, 112) and torch.equal(a, b)


def test_finetune_from_checkpoint_end_to_end(eval_store, tiny_checkpoint, tmp_path):
    result = run_finetune(
        load_finetune_config(None, TINY), store=eval_store, checkpoint=tiny_checkpoint, out_dir=tmp_path, device="cpu"
    )
    report = json.loads((tmp_path / "finetune.json").read_text())
    assert result.finished and report["finished"] and report["kind"] == "finetune"
    assert {"top1", "top5"} <= set(report["metrics"]) and report["metrics"]["top5"] == 1.0  # 2 classes: always
    predictions = report["predictions"]  # top-1 recomputed from the per-video predictions
    assert sorted(p["video_id"] for p in predictions) == open_store(eval_store).video_ids(split="1", subset="test")
    assert all(p["label"] == ("right" if "right" in p["video_id"] else "down") for p in predictions)
    assert report["metrics"]["top1"] == pytest.approx(sum(p["label"] == p["predicted"] for p in predictions) / 3)
    assert report["counts"]["test_evaluated"] == 3 and report["counts"]["train_videos"] == 6
    assert report["counts"]["failed"] == 0 and report["counts"]["epochs_completed"] == 2
    assert report["model"]["kind"] == "checkpoint" and report["settings"]["init"] == "pretrained"
    assert report["settings"]["lr"] == pytest.approx(0.01) and report["settings"]["dropout"] == 0.3
    assert [r["epoch"] for r in report["history"]] == [1, 2] and all(r["clips"] == 6 for r in report["history"])
    assert "top1 (%)" in (tmp_path / "finetune.txt").read_text()
    # the pretrained weights were loaded (the run starts from them, so the first conv moved only a little)
    saved = load_checkpoint(tmp_path / "last.pt")
    initial = load_checkpoint(tiny_checkpoint)["model"]
    name = next(k for k in initial if k.endswith("weight") and initial[k].ndim == 5)
    start, end = initial[name], saved["model"][name]
    assert not torch.equal(start, end) and (end - start).norm() < 0.5 * start.norm()
    with pytest.raises(FileExistsError):
        run_finetune(load_finetune_config(None, TINY), store=eval_store, checkpoint=tiny_checkpoint, out_dir=tmp_path)


def test_resume_equals_uninterrupted_and_from_scratch(eval_store, tmp_path):
    common = dict(store=eval_store, checkpoint="random", backbone="r3d_18", width_multiplier=0.125, device="cpu")
    tiny = [*TINY, "test_clips=2"]  # the 10-clip test is covered above
    full = run_finetune(load_finetune_config(None, tiny), out_dir=tmp_path / "full", **common)
    assert full.report["model"]["kind"] == "random" and full.report["settings"]["init"] == "random"
    first = run_finetune(
        load_finetune_config(None, [*tiny, "stop_after_epoch=1"]), out_dir=tmp_path / "split", **common
    )
    assert not first.finished and first.epochs_completed == 1 and "top1" not in first.report["metrics"]
    with pytest.raises(ValueError, match="config differs"):
        run_finetune(load_finetune_config(None, [*tiny, "epochs=3"]), out_dir=tmp_path / "split", resume=True, **common)
    resumed = run_finetune(load_finetune_config(None, tiny), out_dir=tmp_path / "split", resume=True, **common)
    assert resumed.finished
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.report["metrics"] == full.report["metrics"]
    assert [r["epoch"] for r in resumed.report["history"]] == [1, 2]
