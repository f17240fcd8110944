"""The optimiser and its learning-rate schedule (paper Sec. 4.1: SGD with momentum, linear
warm-up, cosine decay), shared by pretraining and finetuning."""

from __future__ import annotations

import math

import torch
from torch import nn

from comode.train.config import PretrainConfig

__all__ = ["WarmupCosine", "schedule_steps", "build_optimization", "weight_decay_erosion"]


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


def build_optimization(model: nn.Module, config: PretrainConfig, *, warmup_steps: int, total_steps: int):
    """SGD (momentum, Nesterov, weight decay on every parameter) at lr_per_sample x global
    batch, and its per-step :class:`WarmupCosine` schedule over the steps of :func:`schedule_steps`."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.base_lr,
        momentum=config.optim.momentum,
        nesterov=config.optim.nesterov,
        weight_decay=config.optim.weight_decay,
    )
    schedule = WarmupCosine(warmup_steps=warmup_steps, total_steps=total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def weight_decay_erosion(config: PretrainConfig, *, steps_per_epoch: int, steps: int) -> float:
    """The factor by which weight decay alone has shrunk a weight after ``steps`` steps of
    ``config``'s schedule: exp(-wd * sum(lr) / (1 - momentum)).

    A weight whose loss gradient is ~0 -- the M-Network while the motion task is still at its
    blind level -- follows this factor (SGD with momentum m turns a per-step decay lr * wd
    into lr * wd / (1 - m)).  The M-Network's keys are then W * relu(gamma * x + beta) + b
    with every factor shrinking: their input-dependent part falls as the factor squared,
    the bias as the factor, so after L2 normalisation every key turns towards the bias and
    the task collapses (docs/results/2026-12-07-paper-weight-decay.md).  Per clip seen the
    exponent grows by wd * lr_per_sample / (1 - m) at full lr: keep that product when
    scaling lr_per_sample, or a CPU run erodes faster per clip than the run it scales down.
    """
    warmup_steps, total_steps = schedule_steps(config, steps_per_epoch=steps_per_epoch)
    factor = WarmupCosine(warmup_steps=warmup_steps, total_steps=total_steps)
    lr_sum = config.base_lr * sum(factor(step) for step in range(steps))
    return math.exp(-config.optim.weight_decay * lr_sum / (1.0 - config.optim.momentum))
