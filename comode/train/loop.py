"""The pretraining run: data -> model -> SGD steps -> checkpoints and metrics.

    summary = run_pretraining(config, store="data/ucf101.zarr", out_dir=Path("runs/r3d26"), resume=False)

The run wires the pieces of ``comode.train``: the data (:mod:`~comode.data.training_data`,
:mod:`~comode.data.loader`), the model (:mod:`~comode.models.model`), one step
(:mod:`~comode.train.step`), the optimiser and schedule (:mod:`~comode.train.schedule`)
and the run folder (:mod:`~comode.train.rundir`: config, checkpoints, metrics, log).

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
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from comode.data.loader import RunLoader
from comode.data.training_data import TrainingData, open_store_data
from comode.distributed import (
    DistributedContext,
    barrier,
    cleanup_distributed,
    gather_from_all_ranks,
    gather_with_gradients,
    init_distributed,
    is_distributed,
    unwrap_model,
    use_global_batchnorm,
    wrap_model,
)
from comode.logs import to_file as log_to_file
from comode.models.model import CoMoDe
from comode.models.objective import LOSS_KEYS
from comode.progress import Progress
from comode.train.checkpoint import (
    LAST_CHECKPOINT,
    capture_rng_state,
    epoch_checkpoint_name,
    restore_rng_state,
    save_checkpoint,
)
from comode.train.config import RESUMABLE_FIELDS, PretrainConfig, config_from_dict, config_to_dict
from comode.train.metrics import BlindLevelWatch, KeyCollapseWatch, MetricsLog, Throughput
from comode.train.rundir import METRICS_FILE, checkpoint_to_resume, refuse_changes, save_resolved
from comode.train.runlock import hold_run_folder
from comode.train.schedule import build_optimization, schedule_steps
from comode.train.step import Trainer
from comode.train.stop import StopRequest
from comode.version import __version__

__all__ = ["Summary", "run_pretraining", "METRIC_KEYS", "LOG_FILE"]

logger = logging.getLogger(__name__)

# Numbers logged for every step (metrics.jsonl, TensorBoard); NaN = not computed in this mode.
METRIC_KEYS = ("step", "epoch", "lr", *LOSS_KEYS, "grad_norm", "clips_per_s", "skipped_videos")
LOG_FILE = "train.log"


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
        stop_signal: the signal (SIGTERM, SIGINT) that stopped the run before its last step,
            after it saved last.pt; None for a run that ran to its end or to max_steps.
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
    stop_signal: int | None = None


def run_pretraining(
    config: PretrainConfig,
    *,
    store: str | None = None,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
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
        overwrite: write the run into a folder that holds files comode did not write.
        data: training data given directly (tests, custom datasets) instead of ``store``.
        show_progress: draw the progress bar on a terminal (rank 0 only); plain progress lines
            go to the log (and ``out_dir/train.log``) either way.

    Raises:
        FileExistsError: ``out_dir`` already holds a run and ``resume`` is False, holds files
            comode did not write (without ``resume`` or ``overwrite``), is inside a store, or
            another run holds it (:class:`~comode.train.runlock.RunFolderBusy`: rank 0 holds
            the folder's lock for the whole run, :mod:`comode.train.runlock`).
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
        # run folder: what a batch job leaves beside its checkpoints.  The folder is held
        # before anything is written there, the log included.
        with (
            hold_run_folder(out_dir, resume=resume, overwrite=overwrite)
            if context.is_main
            else contextlib.nullcontext(),
            log_to_file(out_dir / LOG_FILE) if context.is_main else contextlib.nullcontext(),
        ):
            return _run(
                config,
                store=store,
                data=data,
                out_dir=out_dir,
                resume=resume,
                context=context,
                show_progress=show_progress,
            )
    finally:
        if owns_process_group:
            cleanup_distributed()


def _run(
    config: PretrainConfig,
    *,
    store: str | None,
    data: TrainingData | None,
    out_dir: Path,
    resume: bool,
    context: DistributedContext,
    show_progress: bool,
) -> Summary:
    checkpoint = _checkpoint_to_resume(out_dir, config=config, resume=resume)
    data = data if data is not None else open_store_data(config.data, store, seed=config.seed)
    steps_per_epoch = len(data.dataset) // config.data.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the dataset has {len(data.dataset)} clips, fewer than one batch of {config.data.batch_size}")
    warmup_steps, total_steps = schedule_steps(config, steps_per_epoch=steps_per_epoch)
    last_step = total_steps if config.max_steps is None else min(total_steps, config.max_steps)

    torch.manual_seed(config.seed)  # same initial weights on every rank
    # supervised_aux: a classifier over the store's labels beside the pretext heads (paper Table 6).
    model = CoMoDe(config.model, num_classes=data.num_classes if config.task == "supervised_aux" else None)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
    if context.world_size > 1 and config.sync_batchnorm:
        model = use_global_batchnorm(model, device=context.device)
    model.to(context.device)
    optimizer, scheduler = build_optimization(model, config, warmup_steps=warmup_steps, total_steps=total_steps)
    start_step = 0
    if checkpoint is not None:
        start_step = _restore_training_state(
            checkpoint, optimizer=optimizer, scheduler=scheduler, steps_per_epoch=steps_per_epoch, context=context
        )
    if context.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels

    gather = None
    if context.world_size > 1:
        gather = gather_with_gradients if config.loss.gather_gradients else gather_from_all_ranks
    trainer = Trainer(
        model=wrap_model(model, context),
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        config=config,
        context=context,
        gather=gather,
    )
    if context.is_main:
        save_resolved(config, out_dir)
    metrics = (
        MetricsLog(out_dir, resume_after_step=start_step if checkpoint is not None else None)
        if context.is_main
        else None
    )

    def save(step: int, *, stopping: bool) -> None:
        names = _checkpoint_names(
            step, steps_per_epoch=steps_per_epoch, last_step=last_step, total_steps=total_steps, config=config
        )
        if stopping and LAST_CHECKPOINT not in names:  # a stop keeps the step it stopped at
            names.insert(0, LAST_CHECKPOINT)
        if names:
            state = _training_state(trainer, step=step, steps_per_epoch=steps_per_epoch, num_classes=data.num_classes)
            for name in names:
                save_checkpoint(state, out_dir / name)

    throughput = Throughput()
    watches = (BlindLevelWatch(total_steps=total_steps), KeyCollapseWatch())
    final: dict[str, float] = {}
    step = start_step
    progress = (
        Progress("pretrain", total=last_step, completed=start_step, unit="steps", enabled=show_progress)
        if context.is_main
        else contextlib.nullcontext()
    )
    run_loader = RunLoader(
        data.dataset,
        global_batch=config.data.batch_size,
        workers=config.data.workers,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
        collate_fn=data.collate,
        pin_memory=context.device.type == "cuda",
    )
    try:
        with progress, StopRequest() as stop:
            stopping = False  # set only from stop.agreed, so every rank leaves at the same step
            while step < last_step and not stopping:
                epoch, position = divmod(step, steps_per_epoch)
                for raw_batch in run_loader.epoch(epoch, start=position):
                    values = trainer.step(raw_batch, step=step)
                    step += 1
                    step_rate, average_rate = throughput.step(config.data.batch_size)
                    final = {
                        "step": step,
                        "epoch": epoch,
                        **values,
                        "clips_per_s": step_rate,
                        "skipped_videos": data.dataset.skipped,
                    }
                    if not math.isfinite(values["loss"]):
                        raise FloatingPointError(
                            f"loss is {values['loss']} at step {step}; stopping. {out_dir / LAST_CHECKPOINT} "
                            "holds the last good state (lower optim.lr_per_sample or check the data)"
                        )
                    stopping = stop.agreed(context.device) and step < last_step  # every rank asks
                    if context.is_main:
                        metrics.write(final)
                        progress.set(step, note=_progress_note(values, average_rate))
                        for watch in watches:
                            for message in watch.update(step, values):
                                logger.warning(message)
                        save(step, stopping=stopping)
                        if stopping:
                            logger.warning(
                                f"stopped by {stop.name} after step {step} of {last_step}: {out_dir / LAST_CHECKPOINT} "
                                "holds this step; continue with --resume"
                            )
                    if stopping:
                        break
                    if step >= last_step:
                        break
        barrier()
    finally:
        if metrics is not None:
            metrics.close()
    steps_this_run = step - start_step
    return Summary(
        out_dir=out_dir,
        steps=step,
        steps_this_run=steps_this_run,
        total_steps=total_steps,
        epochs_completed=step // steps_per_epoch,
        final=final,
        checkpoint=out_dir / LAST_CHECKPOINT,
        metrics_path=out_dir / METRICS_FILE,
        seconds=throughput.elapsed_s,
        clips_per_s=steps_this_run * config.data.batch_size / max(throughput.elapsed_s, 1e-9),
        skipped_videos=data.dataset.skipped,
        stop_signal=stop.signal_number if stopping else None,
    )


def _progress_note(values: Mapping[str, float], clips_per_s: float) -> str:
    """The progress line's numbers: the loss, and each pretext accuracy, beside its blind level."""
    parts = [f"loss {values['loss']:.4f} (blind {values['blind_loss']:.3f})"]
    for task in ("context", "motion"):
        if math.isfinite(values.get(f"acc_{task}", math.nan)):
            parts.append(
                f"acc_{task} {100 * values[f'acc_{task}']:.1f} % (blind {100 * values[f'blind_acc_{task}']:.1f} %)"
            )
    return ", ".join([*parts, f"{clips_per_s:.1f} clips/s"])


def _checkpoint_names(
    step: int, *, steps_per_epoch: int, last_step: int, total_steps: int, config: PretrainConfig
) -> list[str]:
    """Files to write after ``step`` steps: last.pt every save_every_steps (at epoch ends when
    it is None) and at the end; epoch_XXX.pt every checkpoint_every_epochs epochs and after
    the last epoch.  Why not last.pt at every epoch end as well: on a small store an epoch
    is a step or two, and a checkpoint write every step costs more than the step."""
    epoch_end = step % steps_per_epoch == 0
    epochs_done = step // steps_per_epoch
    names = []
    if config.save_every_steps is None:
        periodic = epoch_end
    else:
        periodic = step % config.save_every_steps == 0
    if periodic or step == last_step:
        names.append(LAST_CHECKPOINT)
    if epoch_end and (epochs_done % config.checkpoint_every_epochs == 0 or step == total_steps):
        names.append(epoch_checkpoint_name(epochs_done))
    return names


def _training_state(trainer: Trainer, *, step: int, steps_per_epoch: int, num_classes: int) -> dict[str, Any]:

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
        "sampler": {
            "seed": trainer.config.seed,
            "epoch": epoch,
            "position": position,
            "steps_per_epoch": steps_per_epoch,
            "world_size": trainer.context.world_size,
        },
        "rng": capture_rng_state(),
    }


# What resuming reads from a pretraining checkpoint.
RESUME_KEYS = ("config", "model", "optimizer", "scheduler", "rng", "step", "sampler")


def _checkpoint_to_resume(out_dir: Path, *, config: PretrainConfig, resume: bool) -> dict[str, Any] | None:
    checkpoint = checkpoint_to_resume(out_dir, resume=resume, kind="pretraining", required=RESUME_KEYS)
    if checkpoint is not None:
        # Read back through the dataclasses: a setting added after the run was saved takes
        # its default, which is what the run used.
        saved = config_from_dict(checkpoint["config"])
        refuse_changes(saved, config, out_dir=out_dir, resumable=RESUMABLE_FIELDS)
    return checkpoint


def _restore_training_state(
    checkpoint: Mapping[str, Any],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    steps_per_epoch: int,
    context: DistributedContext,
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
