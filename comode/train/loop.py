"""The pretraining run: data -> model -> SGD steps -> checkpoints and metrics.

    summary = run_pretraining(config, store="data/ucf101.zarr", out_dir=Path("runs/r3d26"), resume=False)

One step (the same code for both tasks): move the batch to the device, augment it there
with a generator seeded from (seed, step, rank), forward (bf16 autocast on CUDA, plain
float32 on the CPU), losses in float32, backward, clip the gradient norm, SGD step, lr
schedule step (linear warm-up then cosine, per step).

Reproducibility: nothing in a step depends on a running random state.  The data order of
an epoch is a permutation seeded by (seed, epoch); the augmentation generator and the
global torch RNG (dropout) are seeded from (seed, step, rank) before every step; the
dataset draws its clip positions from (seed, epoch, index) (data-side contract).  So a run
killed after step k and resumed from its last checkpoint repeats the uninterrupted run
step for step on the CPU (tested): resuming mid-epoch just starts the epoch's permutation
at the first batch not yet consumed.

Tasks: ``pretrain`` (context matching + motion prediction, paper Sec. 3) and
``supervised_aux`` (cross-entropy on labels + 0.2 x the motion loss, paper Table 6).

Shape alphabet: B batch, C channels, T time, H height, W width, D embedding dim,
K negative motion windows, gh / gw motion-vector grid height / width.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from comode.train.checkpoint import (
    LAST_CHECKPOINT,
    CheckpointError,
    capture_rng_state,
    epoch_checkpoint_name,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from comode.train.config import (
    RESUMABLE_FIELDS,
    PretrainConfig,
    config_differences,
    config_from_dict,
    config_to_dict,
    save_resolved,
)
from comode.train.distributed import (
    DistributedContext,
    barrier,
    cleanup_distributed,
    gather_with_gradients,
    init_distributed,
    is_distributed,
    local_batch_size,
    mean_over_ranks,
    unwrap_model,
    use_global_batchnorm,
    wrap_model,
)
from comode.train.losses import Gather, gather_from_all_ranks
from comode.logs import to_file as log_to_file
from comode.progress import Progress
from comode.train.metrics import BlindLevelWatch, MetricsLog, Throughput
from comode.train.model import CoMoDe, CoMoDeOutput, compute_losses
from comode.train.sampling import ClipSpec

__all__ = [
    "TrainingData",
    "open_store_data",
    "Summary",
    "run_pretraining",
    "EpochBatchSampler",
    "SupervisedCoMoDe",
    "WarmupCosine",
    "build_model",
    "compute_objective",
    "derive_seed",
    "METRIC_KEYS",
]

logger = logging.getLogger(__name__)

# Numbers logged for every step (metrics.jsonl, TensorBoard); NaN = not computed in this mode.
LOSS_KEYS = ("loss", "loss_context", "loss_motion", "acc_context", "acc_motion", "loss_supervised", "acc_supervised",
             "blind_loss", "blind_loss_context", "blind_acc_context", "blind_loss_motion", "blind_acc_motion")
METRIC_KEYS = ("step", "epoch", "lr", *LOSS_KEYS, "grad_norm", "clips_per_s", "skipped_videos")
MODEL_INPUT_KEYS = ("clip", "iframe", "mv_future", "mv_negatives")
LOG_FILE = "train.log"


# --------------------------------------------------------------------------------------
# Data: the ONE place that knows comode.train.data's names
# --------------------------------------------------------------------------------------


class EpochDataset(Protocol):
    """What the loop needs from a dataset (``comode.train.data.PretrainDataset`` is one).

    ``dataset[i]`` is a dict: ``clip`` (3, T, h, w), ``iframe`` (3, h, w), ``mv_future``
    float32 (2, T_m, gh, gw), ``mv_negatives`` float32 (K, 2, T_m, gh, gw), ``label`` int,
    ``video_index`` int; its randomness must be a function of (seed, epoch, i).

    The loader's worker processes persist across epochs (see :class:`RunLoader`), so
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
    """

    dataset: EpochDataset
    augment: Augment
    num_classes: int
    input_normalization: Mapping[str, Any]
    # Extra DataLoader keyword arguments of this data source when it loads in worker
    # processes (collate_fn, multiprocessing_context, prefetch_factor, worker_init_fn).
    loader_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def clip_spec(config: PretrainConfig) -> ClipSpec:
    """Which frames a pretraining sample of ``config`` uses (clip length and stride, motion window)."""
    return ClipSpec(frames=config.data.clip_frames, stride=config.data.clip_stride,
                    motion_window=config.data.motion_window)


def open_store_data(config: PretrainConfig, store: str) -> TrainingData:
    """The training data of a comode store, through ``comode.train.data``.

    This adapter is the only code coupled to the data module's names
    (``PretrainDataset``, ``augment_batch``, ``INPUT_NORMALIZATION``).
    """
    from comode.store import open_store
    from comode.train import data as data_module

    dataset = data_module.PretrainDataset(
        store, split=config.data.split, subset=config.data.subset, seed=config.seed, size=config.data.size,
        mv_size=config.data.mv_size, spec=clip_spec(config), iframe_mv=config.data.iframe_mv,
        camera_compensation=config.data.camera_compensation, negative_min_distance=config.data.negative_min_distance,
    )
    augment_spec = data_module.AugmentSpec(size=config.data.size, mv_size=config.data.mv_size,
                                           scale=(config.data.crop_scale, 1.0))
    return TrainingData(
        dataset=dataset,
        augment=functools.partial(data_module.augment_batch, spec=augment_spec),
        num_classes=len(open_store(store).classes),
        input_normalization=getattr(data_module, "INPUT_NORMALIZATION",
                                    {"see": "comode.train.transforms (augment_batch)"}),
        loader_options=data_module.loader_options(workers=config.data.workers),
    )


# --------------------------------------------------------------------------------------
# Data order
# --------------------------------------------------------------------------------------

# Independent random streams derived from the one config seed.
_STREAM_ORDER, _STREAM_AUGMENT, _STREAM_TORCH, _STREAM_LOADER = range(4)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (e.g. seed, stream, step, rank)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class EpochBatchSampler(Sampler[list[int]]):
    """One rank's batches of one epoch, optionally starting after ``start`` consumed batches.

    The epoch order is a permutation of the dataset seeded by (seed, epoch) -- the same on
    every rank -- cut into ``steps_per_epoch`` global batches of ``global_batch`` indices
    (the remainder is dropped); rank r takes rows [r * B_local, (r + 1) * B_local) of each,
    so the W local batches concatenated in rank order are exactly the global batch (the
    order :func:`gather_with_gradients` puts the keys in).
    """

    def __init__(
        self, *, dataset_size: int, global_batch: int, rank: int, world_size: int, seed: int, epoch: int,
        start: int = 0,
    ) -> None:
        self.local_batch = local_batch_size(global_batch, ranks=world_size)
        self.steps_per_epoch = dataset_size // global_batch
        self.dataset_size, self.global_batch = dataset_size, global_batch
        self.rank, self.seed = rank, seed
        self.set_epoch(epoch, start=start)

    def set_epoch(self, epoch: int, *, start: int = 0) -> None:
        """Batches of ``epoch`` from the ``start``-th on, from the next ``iter()``.  The
        sampler lives in the training process, so a loader with persistent workers can keep
        them across epochs."""
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"start={start} outside the epoch's {self.steps_per_epoch} batches")
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, _STREAM_ORDER, self.epoch))
        order = torch.randperm(self.dataset_size, generator=generator).tolist()
        offset = self.rank * self.local_batch
        for batch in range(self.start, self.steps_per_epoch):
            first = batch * self.global_batch + offset
            yield order[first:first + self.local_batch]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start


class RunLoader:
    """The run's one DataLoader; :meth:`epoch` points it at an epoch (and a resume position).

    Worker processes persist across epochs (they would otherwise be started again for
    every epoch: ~0.3 s plus a cold cache each time, which dominates short epochs): the
    sampler is in this process, and the dataset's epoch is shared memory
    (``EpochDataset.set_epoch``), so re-iterating the same loader is enough.
    """

    def __init__(self, data: TrainingData, *, config: PretrainConfig, context: DistributedContext) -> None:
        self.dataset = data.dataset
        self.sampler = EpochBatchSampler(
            dataset_size=len(data.dataset), global_batch=config.data.batch_size, rank=context.rank,
            world_size=context.world_size, seed=config.seed, epoch=0,
        )
        workers = config.data.workers
        self.loader = DataLoader(
            data.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=context.device.type == "cuda",
            persistent_workers=workers > 0,
            # Worker base seeds come from this generator, not from the global RNG, so creating
            # a loader neither consumes nor depends on the training process's random state.
            generator=torch.Generator().manual_seed(derive_seed(config.seed, _STREAM_LOADER, context.rank)),
            **(data.loader_options if workers > 0 else {k: v for k, v in data.loader_options.items()
                                                        if k == "collate_fn"}),
        )

    def epoch(self, epoch: int, *, start: int) -> DataLoader:
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start=start)
        return self.loader


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


class SupervisedCoMoDe(CoMoDe):
    """CoMoDe plus a linear classifier on the pooled V-Network features (paper Table 6).

    forward(...) -> (CoMoDeOutput, logits (B, num_classes)).  The V-Network runs once:
    a forward hook keeps its feature map for the classifier.  Parameter names are CoMoDe's
    plus ``classifier.*``, so the V-Network is ``vnet.*`` in both tasks (export relies on it).
    """

    def __init__(self, *, num_classes: int, **comode_kwargs: Any) -> None:
        super().__init__(**comode_kwargs)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, clip: Tensor, iframe: Tensor | None = None, mv_future: Tensor | None = None,
                mv_negatives: Tensor | None = None) -> tuple[CoMoDeOutput, Tensor]:
        captured: list[Tensor] = []
        handle = self.vnet.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
        try:
            out = super().forward(clip, iframe, mv_future, mv_negatives)
        finally:
            handle.remove()
        pooled = captured[0].flatten(2).mean(dim=2)  # (B, C), what encode_clip returns
        return out, self.classifier(pooled)


def build_model(config: PretrainConfig, *, num_classes: int) -> nn.Module:
    """The training model of ``config.task`` (on the CPU, freshly initialised)."""
    kwargs = asdict(config.model)
    if config.task == "supervised_aux":
        return SupervisedCoMoDe(num_classes=num_classes, **kwargs)
    return CoMoDe(**kwargs)


# --------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------


class WarmupCosine:
    """lr factor of step s: linear warm-up (s + 1) / warmup, then cosine from 1 to 0.

    A class (not a lambda) so LambdaLR's state dict stores its plain attributes.
    """

    def __init__(self, *, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def schedule_steps(config: PretrainConfig, *, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps) of ``config`` at ``steps_per_epoch``: optim.steps when
    set (the warm-up the same share of it that warmup_epochs is of epochs), else whole epochs."""
    if config.optim.steps is None:
        return round(config.optim.warmup_epochs * steps_per_epoch), config.optim.epochs * steps_per_epoch
    total = config.optim.steps
    return round(total * config.optim.warmup_epochs / config.optim.epochs), total


def _build_optimization(model: nn.Module, config: PretrainConfig, *, steps_per_epoch: int):
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.base_lr, momentum=config.optim.momentum,
        nesterov=config.optim.nesterov, weight_decay=config.optim.weight_decay,
    )
    warmup_steps, total_steps = schedule_steps(config, steps_per_epoch=steps_per_epoch)
    schedule = WarmupCosine(warmup_steps=warmup_steps, total_steps=total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


# --------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------


def _as_float32(out: CoMoDeOutput) -> CoMoDeOutput:
    """Losses in float32 even after a bf16 forward (InfoNCE logits / 0.1 need the precision)."""
    return dataclasses.replace(out, **{
        f.name: value.float() for f in dataclasses.fields(out) if isinstance(value := getattr(out, f.name), Tensor)
    })


def compute_objective(
    outputs: CoMoDeOutput | tuple[CoMoDeOutput, Tensor], labels: Tensor, *, config: PretrainConfig,
    gather: Gather | None,
) -> dict[str, Tensor]:
    """The task's loss and its parts (the :data:`LOSS_KEYS`; NaN where not computed)."""
    pretext_output, logits = outputs if isinstance(outputs, tuple) else (outputs, None)
    losses = compute_losses(_as_float32(pretext_output), temperature=config.loss.temperature,
                            alpha=config.loss.alpha, gather=gather,
                            motion_candidates=config.loss.motion_candidates)
    if logits is None:
        missing = torch.full_like(losses["loss"], math.nan)
        return {**losses, "loss_supervised": missing, "acc_supervised": missing}
    cross_entropy = F.cross_entropy(logits.float(), labels)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
    # Blind: the label prior at best; ln(classes) for balanced classes.
    blind_supervised = torch.full_like(cross_entropy, math.log(logits.shape[1]))
    return {
        **losses,
        "loss": cross_entropy + config.loss.supervised_aux_weight * losses["loss"],
        "blind_loss": blind_supervised + config.loss.supervised_aux_weight * losses["blind_loss"],
        "loss_supervised": cross_entropy,
        "acc_supervised": accuracy,
    }


def _forward_context(device: torch.device):
    # bf16 autocast on CUDA (no loss scaling needed, unlike fp16); the CPU runs float32.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class _Trainer:
    """The objects one step needs; :meth:`step` is shared by both tasks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: TrainingData
    config: PretrainConfig
    context: DistributedContext
    gather: Gather | None

    def step(self, raw_batch: Mapping[str, Any], *, step: int) -> dict[str, float]:
        """One optimizer step on this rank's batch; returns rank-averaged metrics."""
        device = self.context.device
        seed = self.config.seed
        torch.manual_seed(derive_seed(seed, _STREAM_TORCH, step, self.context.rank))  # dropout
        generator = torch.Generator(device=device).manual_seed(
            derive_seed(seed, _STREAM_AUGMENT, step, self.context.rank))
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in raw_batch.items()}
        with torch.no_grad():
            inputs = self.data.augment(batch, generator=generator, train=True)
        lr = self.optimizer.param_groups[0]["lr"]

        self.model.train()
        with _forward_context(device):
            outputs = self.model(*(inputs[key] for key in MODEL_INPUT_KEYS))
        losses = compute_objective(outputs, batch["label"], config=self.config, gather=self.gather)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        max_norm = self.config.optim.grad_clip_norm
        # An infinite bound measures the norm (for the log) without clipping.
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), math.inf if max_norm is None else max_norm)
        self.optimizer.step()
        self.scheduler.step()

        values = mean_over_ranks(torch.stack([losses[key].detach().float() for key in LOSS_KEYS]))
        return {"lr": lr, **dict(zip(LOSS_KEYS, values.tolist())), "grad_norm": float(grad_norm)}


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What a finished (or max_steps-stopped) run reports.

    Attributes:
        out_dir: the run directory.
        steps: optimizer steps done in total, before a resume included.
        steps_this_run: steps done by this call.
        total_steps: steps of the full schedule (epochs x steps per epoch).
        epochs_completed: whole epochs done.
        final: the last step's metrics (the :data:`METRIC_KEYS` values).
        checkpoint: path of ``last.pt``.
        metrics_path: path of ``metrics.jsonl``.
        seconds: wall time of this call's steps.
        clips_per_s: global clips per second over this call's steps.
        skipped_videos: videos the dataset could not read (this process's count).
    """

    out_dir: Path
    steps: int
    steps_this_run: int
    total_steps: int
    epochs_completed: int
    final: Mapping[str, float]
    checkpoint: Path
    metrics_path: Path
    seconds: float
    clips_per_s: float
    skipped_videos: int


def run_pretraining(
    config: PretrainConfig,
    *,
    store: str | None = None,
    out_dir: str | Path,
    resume: bool = False,
    data: TrainingData | None = None,
    show_progress: bool = True,
) -> Summary:
    """Train ``config`` on ``store`` (or on ``data``), writing everything under ``out_dir``.

    Under torchrun every rank calls this; rank 0 writes checkpoints, metrics and the bar.

    Args:
        config: the run (see :mod:`comode.train.config`).
        store: a comode store URL; read through :func:`open_store_data`.
        out_dir: run directory: config.yaml, last.pt, epoch_XXX.pt, metrics.jsonl, train.log,
            tensorboard/.
        resume: continue from ``out_dir/last.pt``; ``config`` must equal the saved one except
            for :data:`~comode.train.config.RESUMABLE_FIELDS` (e.g. a larger max_steps).
        data: training data given directly (tests, custom datasets) instead of ``store``.
        show_progress: draw the progress bar on a terminal (rank 0 only); plain progress lines
            go to the log (and ``out_dir/train.log``) either way.

    Raises:
        FileExistsError: ``out_dir`` already holds a run and ``resume`` is False.
        CheckpointError: nothing to resume, or an unreadable last.pt.
        ValueError: a config that differs from the resumed run's, a batch that does not
            divide by the world size, or a dataset smaller than one batch.
        FloatingPointError: the loss became NaN / infinite (last.pt keeps the last good state).
    """
    if (store is None) == (data is None):
        raise ValueError("give exactly one of store= or data=")
    out_dir = Path(out_dir)
    owns_process_group = not is_distributed()
    context = init_distributed()
    try:
        # Every record of the run (progress lines, skipped videos, warnings) also goes to the
        # run folder: what a batch job leaves beside its checkpoints.
        with log_to_file(out_dir / LOG_FILE) if context.is_main else contextlib.nullcontext():
            return _run(config, store=store, data=data, out_dir=out_dir, resume=resume, context=context,
                        show_progress=show_progress)
    finally:
        if owns_process_group:
            cleanup_distributed()


def _run(
    config: PretrainConfig, *, store: str | None, data: TrainingData | None, out_dir: Path, resume: bool,
    context: DistributedContext, show_progress: bool,
) -> Summary:
    checkpoint = _checkpoint_to_resume(out_dir, config=config, resume=resume)
    data = data if data is not None else open_store_data(config, store)
    steps_per_epoch = len(data.dataset) // config.data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the dataset has {len(data.dataset)} clips, fewer than one batch of {config.data.batch_size}")
    total_steps = schedule_steps(config, steps_per_epoch=steps_per_epoch)[1]
    last_step = total_steps if config.max_steps is None else min(total_steps, config.max_steps)

    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = build_model(config, num_classes=data.num_classes)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    if context.world_size > 1 and config.sync_batchnorm:
        model = use_global_batchnorm(model, device=context.device)
    model.to(context.device)
    optimizer, scheduler = _build_optimization(model, config, steps_per_epoch=steps_per_epoch)
    start_step = 0
    if checkpoint is not None:
        start_step = _restore_training_state(checkpoint, optimizer=optimizer, scheduler=scheduler,
                                             steps_per_epoch=steps_per_epoch, context=context)
    if context.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels

    gather = None
    if context.world_size > 1:
        gather = gather_with_gradients if config.loss.gather_gradients else gather_from_all_ranks
    trainer = _Trainer(model=wrap_model(model, context), optimizer=optimizer, scheduler=scheduler, data=data,
                       config=config, context=context, gather=gather)
    if context.is_main:
        save_resolved(config, out_dir)
    metrics = MetricsLog(out_dir, resume_after_step=start_step if checkpoint is not None else None) \
        if context.is_main else None

    def save(step: int) -> None:
        names = _checkpoint_names(step, steps_per_epoch=steps_per_epoch, last_step=last_step,
                                  total_steps=total_steps, config=config)
        if names:
            state = _training_state(trainer, step=step, steps_per_epoch=steps_per_epoch, num_classes=data.num_classes)
            for name in names:
                save_checkpoint(state, out_dir / name)

    throughput = Throughput()
    blind_watch = BlindLevelWatch(total_steps=total_steps)
    final: dict[str, float] = {}
    step = start_step
    progress = Progress("pretrain", total=last_step, completed=start_step, unit="steps",
                        enabled=show_progress and context.is_main) if context.is_main else contextlib.nullcontext()
    run_loader = RunLoader(data, config=config, context=context)
    try:
        with progress:
            while step < last_step:
                epoch, position = divmod(step, steps_per_epoch)
                for raw_batch in run_loader.epoch(epoch, start=position):
                    values = trainer.step(raw_batch, step=step)
                    step += 1
                    step_rate, average_rate = throughput.step(config.data.batch_size)
                    final = {"step": step, "epoch": epoch, **values, "clips_per_s": step_rate,
                             "skipped_videos": data.dataset.skipped}
                    if not math.isfinite(values["loss"]):
                        raise FloatingPointError(
                            f"loss is {values['loss']} at step {step}; stopping. {out_dir / LAST_CHECKPOINT} "
                            "holds the last good state (lower optim.lr_per_sample or check the data)"
                        )
                    if context.is_main:
                        metrics.write(final)
                        progress.set(step, note=_progress_note(values, average_rate))
                        for message in blind_watch.update(step, values):
                            logger.warning(message)
                        save(step)
                    if step >= last_step:
                        break
        barrier()
    finally:
        if metrics is not None:
            metrics.close()
    steps_this_run = step - start_step
    return Summary(
        out_dir=out_dir, steps=step, steps_this_run=steps_this_run, total_steps=total_steps,
        epochs_completed=step // steps_per_epoch, final=final, checkpoint=out_dir / LAST_CHECKPOINT,
        metrics_path=out_dir / "metrics.jsonl", seconds=throughput.elapsed_s,
        clips_per_s=steps_this_run * config.data.batch_size / max(throughput.elapsed_s, 1e-9),
        skipped_videos=data.dataset.skipped,
    )


def _progress_note(values: Mapping[str, float], clips_per_s: float) -> str:
    """The progress line's numbers: the loss, and each pretext accuracy, beside its blind level."""
    parts = [f"loss {values['loss']:.4f} (blind {values['blind_loss']:.3f})"]
    for task in ("context", "motion"):
        if math.isfinite(values.get(f"acc_{task}", math.nan)):
            parts.append(f"acc_{task} {100 * values[f'acc_{task}']:.1f} % (blind {100 * values[f'blind_acc_{task}']:.1f} %)")
    return ", ".join([*parts, f"{clips_per_s:.1f} clips/s"])


def _checkpoint_names(step: int, *, steps_per_epoch: int, last_step: int, total_steps: int,
                      config: PretrainConfig) -> list[str]:
    """Files to write after ``step`` steps: last.pt at epoch ends, every save_every_steps and
    at the end; epoch_XXX.pt every checkpoint_every_epochs epochs and after the last epoch."""
    epoch_end = step % steps_per_epoch == 0
    epochs_done = step // steps_per_epoch
    names = []
    periodic = config.save_every_steps is not None and step % config.save_every_steps == 0
    if epoch_end or periodic or step == last_step:
        names.append(LAST_CHECKPOINT)
    if epoch_end and (epochs_done % config.checkpoint_every_epochs == 0 or step == total_steps):
        names.append(epoch_checkpoint_name(epochs_done))
    return names


def _training_state(trainer: _Trainer, *, step: int, steps_per_epoch: int, num_classes: int) -> dict[str, Any]:
    from comode import __version__

    epoch, position = divmod(step, steps_per_epoch)
    return {
        "comode_version": __version__,
        "task": trainer.config.task,
        "config": config_to_dict(trainer.config),
        "num_classes": num_classes,
        "input_normalization": dict(trainer.data.input_normalization),
        "model": unwrap_model(trainer.model).state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "step": step,
        "epoch": epoch,
        # Where the data order stands: epoch `epoch`'s permutation, `position` batches consumed.
        "sampler": {"seed": trainer.config.seed, "epoch": epoch, "position": position,
                    "steps_per_epoch": steps_per_epoch, "world_size": trainer.context.world_size},
        "rng": capture_rng_state(),
    }


def _checkpoint_to_resume(out_dir: Path, *, config: PretrainConfig, resume: bool) -> dict[str, Any] | None:
    path = out_dir / LAST_CHECKPOINT
    if not resume:
        if path.exists():
            raise FileExistsError(f"{out_dir} already holds a run ({path}); pass --resume to continue it "
                                  "or choose another --out")
        return None
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist")
    checkpoint = load_checkpoint(path)
    # Read back through the dataclasses: a setting added after the run was saved takes its
    # default, which is what the run used.
    saved = config_from_dict(checkpoint["config"])
    changed = [line for line in config_differences(saved, config) if line.split(":")[0] not in RESUMABLE_FIELDS]
    if changed:
        raise ValueError(f"the config differs from the run being resumed ({path}): " + "; ".join(changed)
                         + f". Only {sorted(RESUMABLE_FIELDS)} may change on --resume")
    return checkpoint


def _restore_training_state(
    checkpoint: Mapping[str, Any], *, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, steps_per_epoch: int, context: DistributedContext,
) -> int:
    saved = checkpoint["sampler"]
    if saved["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(
            f"the data now gives {steps_per_epoch} steps per epoch, the checkpoint was made with "
            f"{saved['steps_per_epoch']}: the dataset changed, so the run cannot continue in the same order"
        )
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if context.is_main:  # the saved generators are rank 0's; each step reseeds anyway
        restore_rng_state(checkpoint["rng"])
    return int(checkpoint["step"])
