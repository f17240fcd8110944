"""One optimizer step, the same code for both tasks: move the batch to the device, augment
it there with a generator seeded from (seed, step, rank), forward (bf16 autocast on CUDA,
plain float32 on the CPU), losses in float32, backward, clip the gradient norm, SGD step,
lr schedule step.

Shape alphabet: B batch, C channels, T time, H height, W width.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from comode.data.seeds import STREAM_AUGMENT, STREAM_TORCH, derive_seed
from comode.data.training_data import TrainingData
from comode.distributed import DistributedContext, mean_over_ranks
from comode.models.losses import Gather
from comode.models.objective import LOSS_KEYS, compute_objective
from comode.train.config import PretrainConfig

__all__ = ["MODEL_INPUT_KEYS", "Trainer"]

MODEL_INPUT_KEYS = ("clip", "iframe", "mv_future", "mv_negatives")


def _forward_context(device: torch.device):
    # bf16 autocast on CUDA (no loss scaling needed, unlike fp16); the CPU runs float32.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Trainer:
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
        torch.manual_seed(derive_seed(seed, STREAM_TORCH, step, self.context.rank))  # dropout
        generator = torch.Generator(device=device).manual_seed(
            derive_seed(seed, STREAM_AUGMENT, step, self.context.rank)
        )
        batch = {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in raw_batch.items()}
        with torch.no_grad():
            inputs = self.data.augment(batch, generator=generator, train=True)
        lr = self.optimizer.param_groups[0]["lr"]

        self.model.train()
        with _forward_context(device):
            outputs = self.model(*(inputs[key] for key in MODEL_INPUT_KEYS))
        losses = compute_objective(outputs, batch["label"], config=self.config.loss, gather=self.gather)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        max_norm = self.config.optim.grad_clip_norm
        # An infinite bound measures the norm (for the log) without clipping.
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), math.inf if max_norm is None else max_norm)
        self.optimizer.step()
        self.scheduler.step()

        values = mean_over_ranks(torch.stack([losses[key].detach().float() for key in LOSS_KEYS]))
        return {"lr": lr, **dict(zip(LOSS_KEYS, values.tolist())), "grad_norm": float(grad_norm)}
