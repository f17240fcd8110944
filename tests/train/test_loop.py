"""The pretraining loop on a tiny CPU model: it learns, it resumes exactly, it exports.

A synthetic in-memory dataset stands in for a store (one test uses a real store once
``comode.data.dataset`` exists).  It is built so both pretext tasks are learnable:

* context: every video has its own colour tint and texture; its I-frame is its first
  clip frame plus noise, so a clip can pick its own I-frame among the batch's;
* motion: the texture translates by a velocity (one of 8 directions) that also gives the
  future motion-vector maps (velocity + a fixed position pattern, so positions differ);
  the hard negatives are the maps of 3 other velocities -- the model must read the motion.

Shape alphabet: B batch, T time, H height, W width, K negative windows.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from comode.data.training_data import TrainingData
from comode.train.checkpoint import LAST_CHECKPOINT, load_checkpoint
from comode.train.config import load_config
from comode.train.export import export_backbone, load_backbone, read_backbone_metadata
from comode.train.loop import METRIC_KEYS, run_pretraining
from comode.train.metrics import read_metrics

VELOCITIES = [(dx, dy) for dx in (-2, 0, 2) for dy in (-2, 0, 2) if (dx, dy) != (0, 0)]  # px / frame
CLIP_FRAMES, MV_FRAMES = 16, 8

# The tiny model of the brief, plus 1+1 transformer layers (CPU time).  The learning rate
# is 5x the paper's per-sample rate: 200 steps is all a test can afford.
TINY = [
    "model.width_multiplier=0.125",
    "model.transformer_dim=64",
    "model.embed_dim=32",
    "model.head_hidden=128",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.heads=4",
    "data.batch_size=4",
    "data.workers=0",
    "optim.lr_per_sample=0.0025",
]


class MovingTextures(Dataset):
    """Synthetic videos with learnable context and motion; items follow the data contract.

    Item i in epoch e: clip float32 (3, 16, size, size), iframe (3, size, size), mv_future
    float32 (2, 8, mv, mv), mv_negatives float32 (K, 2, 8, mv, mv), label = velocity index,
    video_index = i.  The video's look depends on (seed, i), its velocity on (seed, i, e).
    """

    def __init__(self, *, videos: int = 32, size: int = 32, mv_size: int = 32, negatives: int = 3, seed: int = 0):
        self.videos, self.size, self.mv_size, self.negatives, self.seed = videos, size, mv_size, negatives, seed
        self.epoch = 0
        self.skipped = 0
        y, x = torch.meshgrid(torch.linspace(-1, 1, mv_size), torch.linspace(-1, 1, mv_size), indexing="ij")
        self.position_pattern = torch.stack([x, y])[:, None]  # (2, 1, mv, mv)

    def __len__(self) -> int:
        return self.videos

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _motion_window(self, velocity: int) -> torch.Tensor:
        value = torch.tensor(VELOCITIES[velocity], dtype=torch.float32)[:, None, None, None] / 2
        return (value + self.position_pattern).expand(2, MV_FRAMES, self.mv_size, self.mv_size).clone()

    def __getitem__(self, index: int) -> dict:
        looks = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        tint = torch.rand(3, 1, 1, 1, generator=looks)
        texture = F.avg_pool2d(torch.rand(1, 1, self.size, self.size, generator=looks), 3, 1, 1)[0]
        texture = (texture - texture.mean()) / texture.std()
        motion = torch.Generator().manual_seed((self.seed * 7919 + index) * 1009 + self.epoch)
        velocities = torch.randperm(len(VELOCITIES), generator=motion)[: 1 + self.negatives].tolist()
        dx, dy = VELOCITIES[velocities[0]]
        frames = torch.stack([torch.roll(texture, (t * dy, t * dx), dims=(1, 2)) for t in range(CLIP_FRAMES)], dim=1)
        clip = tint + 0.5 * frames  # (3, T, H, W) by broadcasting (1, T, H, W)
        return {
            "clip": clip,
            "iframe": clip[:, 0] + 0.1 * torch.randn(3, self.size, self.size, generator=looks),
            "mv_future": self._motion_window(velocities[0]),
            "mv_negatives": torch.stack([self._motion_window(v) for v in velocities[1:]]),
            "label": velocities[0],
            "video_index": index,
        }


def synthetic_augment(batch: dict, *, generator: torch.Generator, train: bool, noise: float = 0.05) -> dict:
    """Pixel noise drawn from ``generator`` -- enough to prove the per-step generator is restored."""
    clip, iframe = batch["clip"], batch["iframe"]
    if train and noise:
        clip = clip + noise * torch.randn(clip.shape, generator=generator, device=clip.device)
        iframe = iframe + noise * torch.randn(iframe.shape, generator=generator, device=iframe.device)
    return {"clip": clip, "iframe": iframe, "mv_future": batch["mv_future"], "mv_negatives": batch["mv_negatives"]}


def synthetic_data(*, noise: float = 0.05, **dataset_kwargs) -> TrainingData:
    def augment(batch, *, generator, train):
        return synthetic_augment(batch, generator=generator, train=train, noise=noise)

    return TrainingData(
        dataset=MovingTextures(**dataset_kwargs),
        augment=augment,
        num_classes=len(VELOCITIES),
        input_normalization={"synthetic": True},
    )


def tiny_config(*overrides: str):
    return load_config(None, [*TINY, *overrides])


def _mean(records, key, steps):
    return sum(r[key] for r in records[steps]) / len(records[steps])


def test_tiny_model_learns_both_pretext_tasks_on_cpu(tmp_path):
    """200 steps: loss falls, both accuracies well above chance; files, checkpoints, export."""
    config = tiny_config("optim.epochs=25", "optim.warmup_epochs=2.5", "checkpoint_every_epochs=10")
    summary = run_pretraining(config, data=synthetic_data(), out_dir=tmp_path, show_progress=False)

    assert summary.steps == summary.total_steps == 200 and summary.epochs_completed == 25
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 201))
    assert set(records[0]) == set(METRIC_KEYS)
    assert math.isnan(records[0]["loss_supervised"])  # not computed in the pretrain task
    print(f"tiny CoMoDe on CPU: {summary.clips_per_s / 4:.1f} steps/s ({summary.clips_per_s:.1f} clips/s)")

    first, last = slice(0, 20), slice(-40, None)
    assert _mean(records, "loss", last) < _mean(records, "loss", first) - 0.5
    # Blind levels, logged every step: context 1 / B = 1 / 4; motion 1 / (B + K) = 1 / 7 (a
    # predictor that ignores the clip still knows each cell's position, so only the 4
    # videos and 3 hard windows at that position are left to tell apart).
    assert all(r["blind_acc_context"] == pytest.approx(1 / 4) for r in records)
    assert all(r["blind_acc_motion"] == pytest.approx(1 / 7) for r in records)
    assert all(r["blind_loss_motion"] == pytest.approx(math.log(7)) for r in records)
    # Measured (seeds 0-3): acc_context 0.72-0.84.  In 200 joint steps the motion branch
    # stays near its blind level (0.15-0.19 against 0.14); reading the velocity is the next
    # test's, motion-only, run.
    assert _mean(records, "acc_context", last) > 0.5
    # Warm-up then cosine: the lr peaks at 4 x 0.0025 = 0.01 after 20 steps and ends near 0.
    lrs = [r["lr"] for r in records]
    assert lrs[0] == pytest.approx(0.01 / 20) and max(lrs) == pytest.approx(0.01) and lrs[-1] < 1e-5

    assert {p.name for p in tmp_path.glob("*.pt")} == {"last.pt", "epoch_010.pt", "epoch_020.pt", "epoch_025.pt"}
    assert load_config(tmp_path / "config.yaml") == config
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["step"] == 200

    exported = export_backbone(tmp_path / LAST_CHECKPOINT, tmp_path / "vnet.safetensors")
    metadata = read_backbone_metadata(exported)
    assert metadata["backbone"] == "r3d_26" and float(metadata["width_multiplier"]) == 0.125
    clip = MovingTextures()[0]["clip"][None]
    from_export, from_checkpoint = load_backbone(exported).eval(), load_backbone(tmp_path / LAST_CHECKPOINT).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_export(clip), from_checkpoint(clip), rtol=0, atol=0)
    assert from_export.out_channels == 64 and from_export.comode_metadata["task"] == "pretrain"


def test_motion_prediction_alone_learns_to_read_the_motion(tmp_path):
    """Motion-only ablation, 160 steps: loss_motion falls well below ln 7 (the loss of a model
    that knows the position but not which of the 7 candidate velocities it is), so the
    V-Network reads the clip's motion.  Measured (seeds 0-2): 1.37-1.41, accuracy 0.32-0.34."""
    config = tiny_config("model.use_context=false", "optim.epochs=20", "optim.warmup_epochs=2.5")
    run_pretraining(config, data=synthetic_data(), out_dir=tmp_path, show_progress=False)
    records = read_metrics(tmp_path)
    last = slice(-40, None)
    assert all(math.isnan(r["loss_context"]) for r in records)
    assert _mean(records, "loss_motion", last) < math.log(7) - 0.3
    assert _mean(records, "acc_motion", last) > 0.25


def test_the_blind_control_sits_at_its_blind_level_and_the_run_says_so(tmp_path, caplog):
    """model.blind=true: heads that cannot see the clip score the blind level of each task
    (the measured one equals the logged one), and the run warns about both tasks."""
    config = tiny_config("model.blind=true", "optim.epochs=12", "optim.warmup_epochs=1")
    with caplog.at_level("WARNING", logger="comode.train.loop"):
        run_pretraining(config, data=synthetic_data(), out_dir=tmp_path, show_progress=False)
    records = read_metrics(tmp_path)
    last = slice(-40, None)
    assert abs(_mean(records, "acc_motion", last) - 1 / 7) < 0.05
    assert abs(_mean(records, "loss_motion", last) - math.log(7)) < 0.1
    assert abs(_mean(records, "acc_context", last) - 1 / 4) < 0.08
    warnings = [r.getMessage() for r in caplog.records if "blind level" in r.getMessage()]
    assert len(warnings) == 2 and {"context", "motion"} == {w.split()[1] for w in warnings}
    assert "acc_motion" in warnings[-1] or "acc_motion" in warnings[0]


def test_blind_level_watch_warns_once_late_and_only_near_the_level():
    from comode.train.metrics import BlindLevelWatch

    watch = BlindLevelWatch(total_steps=100, after=0.5, margin=0.02, window=10)
    blind = {
        "blind_acc_motion": 1 / 11,
        "blind_loss_motion": math.log(11),
        "loss_motion": math.log(11),
        "blind_acc_context": 1 / 8,
        "blind_loss_context": math.log(8),
        "loss_context": 1.0,
    }
    messages = []
    for step in range(1, 101):
        values = {**blind, "acc_motion": 0.09, "acc_context": 0.6}  # motion blind, context learned
        messages += [(step, m) for m in watch.update(step, values)]
    assert [step for step, _ in messages] == [50]  # once, when half the run is done
    assert "motion task is still at its blind level" in messages[0][1] and "9.1 %" in messages[0][1]
    quiet = BlindLevelWatch(total_steps=100)
    assert not any(quiet.update(s, {**blind, "acc_motion": 0.2, "acc_context": 0.6}) for s in range(1, 101))


def test_key_collapse_watch_warns_once_when_the_keys_stop_depending_on_the_video():
    from comode.train.metrics import KeyCollapseWatch

    watch = KeyCollapseWatch(threshold=1e-4, window=10)
    messages = []
    for step in range(1, 61):
        # motion keys healthy for 30 steps, then collapsed (as in the paper run at 22.6k clips)
        motion = 0.04 if step <= 30 else 1e-6
        values = {"key_spread_context": 0.15, "key_spread_motion": motion}
        messages += [(step, m) for m in watch.update(step, values)]
    # the 10-step mean falls below 1e-4 only once 10 collapsed steps are in the window
    assert [step for step, _ in messages] == [40]
    assert "motion keys have collapsed after 40 steps" in messages[0][1]
    # NaN (a task switched off) is ignored, never warned about
    assert not any(KeyCollapseWatch(window=2).update(s, {"key_spread_motion": math.nan}) for s in range(1, 10))


def test_last_checkpoint_is_written_every_save_every_steps_not_at_every_epoch_end():
    from comode.train.loop import _checkpoint_names

    # A 15-clip store at batch 8: every step ends an epoch.
    def written(config, last_step=2000):
        return {
            step: names
            for step in range(1, last_step + 1)
            if (
                names := _checkpoint_names(
                    step, steps_per_epoch=1, last_step=last_step, total_steps=2000, config=config
                )
            )
        }

    periodic = written(tiny_config("save_every_steps=500", "checkpoint_every_epochs=1000"))
    assert periodic == {
        500: ["last.pt"],
        1000: ["last.pt", "epoch_1000.pt"],
        1500: ["last.pt"],
        2000: ["last.pt", "epoch_2000.pt"],
    }
    # save_every_steps null: last.pt at every epoch end (here every step), as before.
    assert len(written(tiny_config("save_every_steps=null", "checkpoint_every_epochs=1000"))) == 2000
    # A run stopped early by max_steps still leaves its state.
    assert written(tiny_config("save_every_steps=500"), last_step=7)[7][0] == "last.pt"


LOSS_COLUMNS = ("loss", "loss_context", "loss_motion", "acc_context", "acc_motion", "lr", "grad_norm")


def test_resumed_run_repeats_the_uninterrupted_run_step_for_step(tmp_path):
    """2N steps in one go == N steps, then a new run resumed from last.pt (mid-epoch) for N more.

    Dropout (0.1) and the augmentation noise are on, so the per-step random streams must be
    restored too; N = 11 stops in the middle of an epoch of 8 steps.
    """
    config = tiny_config("optim.epochs=3", "optim.warmup_epochs=1", "save_every_steps=null")
    whole = run_pretraining(config, data=synthetic_data(), out_dir=tmp_path / "whole", show_progress=False)
    assert whole.steps == 24

    first = run_pretraining(
        dataclasses.replace(config, max_steps=11),
        data=synthetic_data(),
        out_dir=tmp_path / "split",
        show_progress=False,
    )
    assert first.steps == 11 and load_checkpoint(tmp_path / "split" / LAST_CHECKPOINT)["sampler"]["position"] == 3
    with pytest.raises(FileExistsError, match="--resume"):
        run_pretraining(config, data=synthetic_data(), out_dir=tmp_path / "split", show_progress=False)
    resumed = run_pretraining(
        config, data=synthetic_data(), out_dir=tmp_path / "split", resume=True, show_progress=False
    )
    assert resumed.steps == 24 and resumed.steps_this_run == 13

    expected, actual = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    assert [r["step"] for r in actual] == list(range(1, 25))
    for want, got in zip(expected, actual):
        for key in LOSS_COLUMNS:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), (want["step"], key)
    final_whole = load_checkpoint(tmp_path / "whole" / LAST_CHECKPOINT)["model"]
    final_split = load_checkpoint(tmp_path / "split" / LAST_CHECKPOINT)["model"]
    for name, tensor in final_whole.items():
        torch.testing.assert_close(final_split[name], tensor, rtol=1e-6, atol=1e-6, msg=name)


def test_resume_refuses_a_changed_config(tmp_path):
    config = tiny_config("optim.epochs=1", "optim.warmup_epochs=0", "max_steps=1")
    run_pretraining(config, data=synthetic_data(), out_dir=tmp_path, show_progress=False)
    changed = tiny_config("optim.epochs=1", "optim.warmup_epochs=0", "max_steps=2", "loss.alpha=0.3")
    with pytest.raises(ValueError, match=r"loss.alpha: 0.5 -> 0.3"):
        run_pretraining(changed, data=synthetic_data(), out_dir=tmp_path, resume=True, show_progress=False)


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default(tmp_path):
    from comode.train.checkpoint import save_checkpoint

    config = tiny_config("optim.epochs=1", "optim.warmup_epochs=0", "max_steps=1")
    run_pretraining(config, data=synthetic_data(), out_dir=tmp_path, show_progress=False)
    checkpoint = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    del checkpoint["config"]["data"]["negative_min_distance"]  # as saved by an older comode
    save_checkpoint(checkpoint, tmp_path / LAST_CHECKPOINT)
    longer = tiny_config("optim.epochs=1", "optim.warmup_epochs=0", "max_steps=2")
    summary = run_pretraining(longer, data=synthetic_data(), out_dir=tmp_path, resume=True, show_progress=False)
    assert summary.steps == 2
    older_but_changed = tiny_config(
        "optim.epochs=1", "optim.warmup_epochs=0", "max_steps=3", "data.negative_min_distance=0.2"
    )
    with pytest.raises(ValueError, match=r"data.negative_min_distance: 0.0 -> 0.2"):
        run_pretraining(older_but_changed, data=synthetic_data(), out_dir=tmp_path, resume=True, show_progress=False)


def test_supervised_aux_task_trains_the_classifier_with_the_motion_loss(tmp_path):
    """Paper Table 6: cross-entropy + 0.2 x motion loss, no context branch; export still works."""
    config = tiny_config("task=supervised_aux", "model.use_context=false", "optim.epochs=2", "optim.warmup_epochs=0")
    summary = run_pretraining(config, data=synthetic_data(), out_dir=tmp_path, show_progress=False)
    records = read_metrics(tmp_path)
    assert summary.steps == 16
    for record in records:
        assert math.isnan(record["loss_context"]) and math.isfinite(record["loss_supervised"])
        assert record["loss"] == pytest.approx(record["loss_supervised"] + 0.2 * record["loss_motion"], rel=1e-5)
    checkpoint = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    assert checkpoint["model"]["classifier.weight"].shape == (len(VELOCITIES), 64)
    backbone = load_backbone(export_backbone(tmp_path / LAST_CHECKPOINT, tmp_path / "vnet.safetensors"))
    assert backbone.comode_metadata["task"] == "supervised_aux"


# --------------------------------------------------------------------------------------
# A real store (once the data pipeline exists)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory) -> str:
    """A store of 4 short synthetic videos in 2 classes, extracted with the real pipeline."""
    pytest.importorskip("comode.data.dataset")  # before the extraction: no data module, no store needed
    from comode.extract.datasets import load_dataset
    from comode.extract.executors import make_executor
    from comode.extract.pipeline import run_extraction
    from comode.extract.settings import ExtractSettings
    from tests.videos import translating_frames, write_video

    root = tmp_path_factory.mktemp("synthetic_videos")
    motions = {"right": [(2, 0), (3, 1)], "down": [(0, 2), (1, 3)]}
    for class_name, velocities in motions.items():
        (root / class_name).mkdir()
        for number, (dx, dy) in enumerate(velocities):
            frames = translating_frames(frames=90, width=170, height=128, dx=dx, dy=dy, seed=number)
            write_video(root / class_name / f"video{number}.avi", frames)
    store = str(tmp_path_factory.mktemp("store") / "synthetic.zarr")
    summary = run_extraction(load_dataset("folder", root), store, ExtractSettings(), make_executor(workers=0))
    assert summary.completed == 4
    return store


def test_a_few_steps_on_a_real_store(tmp_path, synthetic_store):
    config = tiny_config(
        "data.split=null",
        "data.subset=null",
        "data.size=64",
        "optim.epochs=2",
        "optim.warmup_epochs=0",
        "data.workers=1",
    )
    summary = run_pretraining(config, store=synthetic_store, out_dir=tmp_path, show_progress=False)
    assert summary.steps == 2  # 4 videos / batch 4 = 1 step per epoch
    records = read_metrics(tmp_path)
    assert all(math.isfinite(r["loss"]) for r in records)
    assert load_backbone(tmp_path / LAST_CHECKPOINT).out_channels == 64
