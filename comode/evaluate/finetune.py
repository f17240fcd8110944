"""Supervised finetuning of the V-Network on a labelled store (paper Sec. 4.1, Table 2).

The pretrained V-Network (or a random initialisation: the "from scratch" rows of Table 2)
gets global average pooling, dropout (0.3) and a linear classifier, and the whole network
is trained with cross-entropy on the train videos of a split:

* **train**: every epoch each train video gives one clip (16 frames, stride 4, uniform
  random start; short videos repeat their last frame, :mod:`comode.data.frames`),
  augmented on the training device: random resized crop (area 0.2-1, aspect 3/4-4/3) to
  112, horizontal flip, colour jitter (p 0.8) and grayscale (p 0.2) -- the pretraining
  augmentations without blur (:mod:`comode.data.transforms`).
* **optimiser**: SGD, momentum 0.9, lr = lr_per_sample x batch (paper: 0.0001 x B on
  UCF101, 0.0002 x B on HMDB51), cosine decay over all steps (optional linear warm-up).
* **test**: the 10 sliding-window clips of every test video (:mod:`comode.data.frames`),
  centre crop, softmax scores averaged over the clips, top-1 / top-5.

Resumable like pretraining: ``last.pt`` (atomic, weights_only-safe) after every epoch;
each epoch's randomness (clip starts, order, augmentation, dropout) is derived from
(seed, epoch), so ``--resume`` continues exactly where an uninterrupted run would be.

Shape alphabet: B batch, C channels, T time, H / W height / width.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from comode.data.clips import VideoClips, usable_batches
from comode.data.frames import RandomClipIndices, WindowSpec
from comode.data.seeds import derive_seed
from comode.data.transforms import AugmentSpec, UniformDraws, colour_jitter, crop_resize, normalize, random_crop_boxes
from comode.evaluate.accuracy import top_k_accuracy
from comode.evaluate.features import default_device, forward_in_passes, prepare_clips, store_identity
from comode.evaluate.finetune_config import RESUMABLE, FinetuneConfig, load_finetune_config
from comode.evaluate.network import EvaluatedNetwork
from comode.evaluate.report import write_report
from comode.models.backbones import build_backbone
from comode.progress import Progress
from comode.store import open_store
from comode.train.checkpoint import (
    LAST_CHECKPOINT,
    CheckpointError,
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from comode.train.rundir import (
    METRICS_FILE,
    checkpoint_to_resume,
    keep_records_until,
    read_records,
    refuse_changes,
    save_config,
)
from comode.train.runlock import hold_run_folder
from comode.train.schedule import WarmupCosine

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "load_finetune_config",
    "VideoClassifier",
    "augment_clips",
    "run_finetune",
]

_STREAM_ORDER, _STREAM_CLIPS, _STREAM_AUGMENT, _STREAM_DROPOUT, _STREAM_INIT = range(5)


class VideoClassifier(nn.Module):
    """V-Network -> global average pool -> dropout -> linear: (B, 3, T, H, W) -> (B, classes)."""

    def __init__(self, vnet: nn.Module, *, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.vnet = vnet
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(vnet.out_channels, num_classes)

    def forward(self, clip: Tensor) -> Tensor:
        return self.fc(self.dropout(self.vnet(clip).mean(dim=(2, 3, 4))))


def augment_clips(
    clips: Tensor, *, generator: torch.Generator, size: int = 112, min_crop_area: float = 0.2, colour: bool = True
) -> Tensor:
    """(B, 3, T, H, W) uint8 -> (B, 3, T, size, size) float normalised, randomly augmented.

    Random resized crop + flip shared by the clip's frames, then (``colour``) colour
    jitter / grayscale with the pretraining parameters.
    """
    b, _, t, h, w = clips.shape
    spec = AugmentSpec(size=size, scale=(min_crop_area, 1.0))
    draw = UniformDraws(generator, clips.device)
    boxes = random_crop_boxes(b, h, w, scale=spec.scale, ratio=spec.ratio, draw=draw)
    flip = draw.uniform(b) < spec.flip_p
    frames = clips.to(torch.float32).div_(255.0).flatten(1, 2)  # (B, 3T, H, W)
    out = crop_resize(frames, boxes, size=size, flip=flip).unflatten(1, (3, t))
    if colour:
        out = colour_jitter(out, spec=spec, draw=draw)
    return normalize(out, channel_dim=1)


@dataclass
class FinetuneResult:
    report: dict[str, Any]
    report_path: Path
    checkpoint: Path
    epochs_completed: int
    finished: bool


def run_finetune(
    config: FinetuneConfig,
    *,
    store: str,
    checkpoint: str | Path | None,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    backbone: str | None = None,
    width_multiplier: float = 1.0,
    device: str | None = None,
    show_progress: bool = False,
) -> FinetuneResult:
    """Finetune and test; writes ``out_dir/{config.yaml, last.pt, metrics.jsonl, finetune.json, .txt}``.

    ``checkpoint``: the pretrained V-Network, or "random" to train from scratch (``backbone``,
    ``width_multiplier``, weights seeded by ``config.seed``).  With ``config.stop_after_epoch``
    the run stops early (no test, ``finished`` False); ``resume=True`` continues it from
    ``out_dir/last.pt`` alone (``checkpoint`` is then only recorded, not read).  The run
    holds ``out_dir`` throughout, as pretraining does (:mod:`comode.train.runlock`);
    ``overwrite``: write it into a folder that holds files comode did not write.

    Raises:
        FileExistsError: ``out_dir`` holds a run and ``resume`` is False, holds files comode
            did not write (without ``resume`` or ``overwrite``), is inside a store, or another
            run holds it (:class:`~comode.train.runlock.RunFolderBusy`).
        CheckpointError / ValueError: nothing to resume, config changed, bad store or split.
    """
    with hold_run_folder(Path(out_dir), resume=resume, overwrite=overwrite):
        return _finetune(
            config,
            store=store,
            checkpoint=checkpoint,
            out_dir=Path(out_dir),
            resume=resume,
            backbone=backbone,
            width_multiplier=width_multiplier,
            device=device,
            show_progress=show_progress,
        )


def _finetune(
    config: FinetuneConfig,
    *,
    store: str,
    checkpoint: str | Path | None,
    out_dir: Path,
    resume: bool,
    backbone: str | None,
    width_multiplier: float,
    device: str | None,
    show_progress: bool,
) -> FinetuneResult:

    out = Path(out_dir)
    torch_device = torch.device(device) if device else default_device()
    opened = open_store(store).snapshot()  # listed several times: one scan
    split_train, split_test = opened.split(config.split)
    # Unlabelled videos (-1) cannot be trained or scored: left out, counted.
    train_ids = [v for v, label in zip(split_train, opened.labels(split_train)) if label >= 0]
    test_ids = [v for v, label in zip(split_test, opened.labels(split_test)) if label >= 0]
    unlabelled = len(split_train) - len(train_ids) + len(split_test) - len(test_ids)
    classes = opened.classes
    if not train_ids or not test_ids:
        raise ValueError(
            f"split {config.split!r} has {len(train_ids)} train and {len(test_ids)} test videos; finetuning needs both"
        )
    if not classes:
        raise ValueError(f"store {store} has no classes: finetuning needs a labelled store")

    saved = _checkpoint_to_resume(out, config=config, resume=resume)
    if saved is None:
        network = EvaluatedNetwork.parse(
            checkpoint, backbone=backbone, width_multiplier=width_multiplier, seed=config.seed
        )
        model_identity, vnet = network.describe(), network.build()
    else:  # every weight comes from last.pt: the pretrained file need not exist any more
        model_identity = saved["init"]
        vnet = build_backbone(model_identity["backbone"], width_multiplier=float(model_identity["width_multiplier"]))
    torch.manual_seed(derive_seed(config.seed, _STREAM_INIT))
    model = VideoClassifier(vnet, num_classes=len(classes), dropout=config.dropout).to(torch_device)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    warmup = round(config.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps=warmup, total_steps=total_steps))
    start_epoch = 0
    if saved is not None:
        if list(saved["classes"]) != list(classes) or saved.get("train_videos") != len(train_ids):
            raise ValueError(
                f"the store's classes or train videos changed since {out / LAST_CHECKPOINT} was written "
                f"({len(saved['classes'])} -> {len(classes)} classes, {saved.get('train_videos')} -> "
                f"{len(train_ids)} train videos); the run cannot continue unchanged"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng_state(saved["rng"])
        start_epoch = int(saved["epoch"])
    save_config(out, asdict(config), title="comode finetuning config")
    keep_records_until(out, key="epoch", last=start_epoch)

    # Never below the resumed epoch: a smaller stop_after_epoch on --resume trains nothing more.
    last_epoch = max(start_epoch, min(config.epochs, config.stop_after_epoch or config.epochs))
    skipped: dict[str, str] = dict(saved.get("skipped", {})) if saved is not None else {}
    path = out / LAST_CHECKPOINT
    with Progress("finetune", total=(last_epoch - start_epoch) * steps_per_epoch, enabled=show_progress) as bar:
        for epoch in range(start_epoch, last_epoch):
            record = _train_epoch(
                model,
                optimizer,
                scheduler,
                store=store,
                train_ids=train_ids,
                config=config,
                epoch=epoch,
                device=torch_device,
                skipped=skipped,
                bar=bar,
            )
            with open(out / METRICS_FILE, "a") as handle:
                handle.write(json.dumps({"epoch": epoch + 1, **record}) + "\n")
            save_checkpoint(
                {
                    "task": "finetune",
                    "config": asdict(config),
                    "init": model_identity,
                    "classes": classes,
                    "train_videos": len(train_ids),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "step": (epoch + 1) * steps_per_epoch,
                    "rng": capture_rng_state(),
                    "skipped": skipped,
                },
                path,
            )

    init = "random" if model_identity.get("kind") == "random" else "pretrained"
    settings = {
        **asdict(config),
        "lr": config.lr,
        "init": init,
        "test_protocol": f"{config.test_clips} sliding-window clips, softmax averaged, centre crop",
    }
    counts = {
        "train_videos": len(train_ids),
        "train_videos_skipped": len(skipped),
        "test_videos": len(test_ids),
        "unlabelled": unlabelled,
        "epochs_completed": last_epoch,
        "steps_per_epoch": steps_per_epoch,
    }
    store_info = store_identity(opened, classes)
    finished = last_epoch >= config.epochs
    metrics: dict[str, float] = {}
    failed: dict[str, str] = {}
    predictions: list[dict[str, str]] = []
    if finished:
        scores, labels, ids, failed = _test(
            model, store=store, test_ids=test_ids, config=config, device=torch_device, show_progress=show_progress
        )
        metrics = top_k_accuracy(scores, labels, ks=(1, 5))
        counts.update(test_evaluated=int(labels.shape[0]), failed=len(failed))
        # Per test video, for confusion analysis (and to check the metrics from the report alone).
        predictions = [
            {"video_id": video_id, "label": classes[label], "predicted": classes[guess]}
            for video_id, label, guess in zip(ids, labels.tolist(), scores.argmax(dim=1).tolist())
        ]
    history = read_records(out)
    if history:
        metrics["train_top1_last_epoch"] = history[-1]["train_top1"]
    report = write_report(
        out,
        "finetune",
        settings=settings,
        model=model_identity,
        store=store_info,
        metrics=metrics,
        counts=counts,
        failed={**skipped, **failed},
        extra={"finished": finished, "history": history, "predictions": predictions},
    )
    return FinetuneResult(
        report=report.data, report_path=report.path, checkpoint=path, epochs_completed=last_epoch, finished=finished
    )


def _train_epoch(
    model: VideoClassifier,
    optimizer,
    scheduler,
    *,
    store: str,
    train_ids: list[str],
    config: FinetuneConfig,
    epoch: int,
    device: torch.device,
    skipped: dict[str, str],
    bar: Progress,
) -> dict[str, float]:
    model.train()
    generator = torch.Generator().manual_seed(derive_seed(config.seed, _STREAM_ORDER, epoch))
    order = torch.randperm(len(train_ids), generator=generator)
    ordered = [train_ids[i] for i in order.tolist()]
    dataset = VideoClips(
        store, ordered, clip_indices=RandomClipIndices(key=(config.seed, _STREAM_CLIPS, epoch), window=WindowSpec())
    )
    augment_generator = torch.Generator(device=device).manual_seed(derive_seed(config.seed, _STREAM_AUGMENT, epoch))
    torch.manual_seed(derive_seed(config.seed, _STREAM_DROPOUT, epoch))
    losses, correct, seen, started = [], 0, 0, time.perf_counter()
    for good, _ in usable_batches(
        dataset,
        batch_size=config.batch_size,
        workers=config.workers,
        failures=skipped,
        pin_memory=device.type == "cuda",
    ):
        if good:
            clips = torch.cat([item["clips"] for item in good]).to(device, non_blocking=True)  # (B, 3, T, H, W)
            labels = torch.tensor([item["label"] for item in good], device=device)
            inputs = augment_clips(
                clips,
                generator=augment_generator,
                size=config.size,
                min_crop_area=config.min_crop_area,
                colour=config.colour,
            )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(inputs)
            loss = nn.functional.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            correct += int((logits.argmax(dim=1) == labels).sum())
            seen += len(good)
        else:  # a batch of videos that all failed still counts as a step: the schedule ends on time
            scheduler.step()
        rate = seen / max(time.perf_counter() - started, 1e-9)
        loss_text = f"{np.mean(losses):.4f}" if losses else "-"
        bar.advance(1, note=f"epoch {epoch + 1} loss {loss_text} {rate:.1f} clips/s")
    return {
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "train_top1": correct / max(seen, 1),
        "lr": float(scheduler.get_last_lr()[0]),
        "clips": seen,
    }


@torch.no_grad()
def _test(
    model: VideoClassifier,
    *,
    store: str,
    test_ids: list[str],
    config: FinetuneConfig,
    device: torch.device,
    show_progress: bool,
) -> tuple[Tensor, Tensor, list[str], dict[str, str]]:
    """Softmax scores averaged over the 10 test clips: (N, classes), labels (N,), the N
    video ids (test_ids without the failed ones), failures."""
    model.eval()
    dataset = VideoClips(store, test_ids, window=WindowSpec(clips=config.test_clips))
    scores, labels, ids, failed = [], [], [], {}
    with Progress("test", total=len(test_ids), enabled=show_progress) as bar:
        for good, batch in usable_batches(
            dataset, batch_size=config.test_videos_per_batch, workers=config.workers, failures=failed
        ):
            if good:
                clips = torch.cat([item["clips"] for item in good]).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    logits = forward_in_passes(model, prepare_clips(clips, size=config.size))
                probabilities = logits.float().softmax(dim=1).unflatten(0, (len(good), -1)).mean(dim=1)
                scores.append(probabilities.cpu())
                labels += [item["label"] for item in good]
                ids += [test_ids[item["index"]] for item in good]
            bar.advance(batch)
    classes = model.fc.out_features
    return (
        torch.cat(scores) if scores else torch.zeros(0, classes),
        torch.tensor(labels, dtype=torch.int64),
        ids,
        failed,
    )


# What resuming reads from a finetuning checkpoint.
_RESUME_KEYS = ("config", "init", "classes", "model", "optimizer", "scheduler", "rng", "epoch")


def _checkpoint_to_resume(out: Path, *, config: FinetuneConfig, resume: bool) -> dict[str, Any] | None:
    saved = checkpoint_to_resume(out, resume=resume, kind="finetuning", required=_RESUME_KEYS)
    if saved is not None:
        if saved.get("task") != "finetune":
            raise CheckpointError(
                f"{out / LAST_CHECKPOINT} is not a finetuning checkpoint (task {saved.get('task')!r})"
            )
        refuse_changes(saved["config"], asdict(config), out_dir=out, resumable=RESUMABLE)
    return saved
