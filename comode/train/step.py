"""One optimizer step, the same code for both tasks: move the batch to the device, augment
it there with a generator seeded from (seed, step, rank), forward (bf16 autocast on CUDA,
plain float32 on the CPU), losses in float32, backward, clip the gradient norm, SGD step,
lr schedule step.

Shape alphabet: B batch, C channels, T time, H height, W width.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comode.train.config import PretrainConfig
from comode.train.distributed import DistributedContext, mean_over_ranks
from comode.train.inputs import TrainingData
from comode.train.losses import Gather
from comode.train.model import CoMoDeOutput, compute_losses
from comode.train.seeds import STREAM_AUGMENT, STREAM_TORCH, derive_seed

__all__ = ["LOSS_KEYS", "MODEL_INPUT_KEYS", "compute_objective", "Trainer"]

# Numbers logged for every step (metrics.jsonl, TensorBoard); NaN = not computed in this mode.
LOSS_KEYS = (
    "loss",
    "loss_context",
    "loss_motion",
    "acc_context",
    "acc_motion",
    "loss_supervised",
    "acc_supervised",
    "blind_loss",
    "blind_loss_context",
    "blind_acc_context",
    "blind_loss_motion",
    "blind_acc_motion",
    "key_spread_context",
    "key_spread_motion",
)
MODEL_INPUT_KEYS = ("clip", "iframe", "mv_future", "mv_negatives")


def _as_float32(out: CoMoDeOutput) -> CoMoDeOutput:
    """Losses in float32 even after a bf16 forward (InfoNCE logits / 0.1 need the precision)."""
    return dataclasses.replace(
        out,
        **{f.name: value.float() for f in dataclasses.fields(out) if isinstance(value := getattr(out, f.name), Tensor)},
    )


def compute_objective(
    outputs: CoMoDeOutput | tuple[CoMoDeOutput, Tensor],
    labels: Tensor,
    *,
    config: PretrainConfig,
    gather: Gather | None,
) -> dict[str, Tensor]:
    """The task's loss and its parts (the :data:`LOSS_KEYS`; NaN where not computed)."""
    pretext_output, logits = outputs if isinstance(outputs, tuple) else (outputs, None)
    losses = compute_losses(
        _as_float32(pretext_output),
        temperature=config.loss.temperature,
        alpha=config.loss.alpha,
        gather=gather,
        motion_candidates=config.loss.motion_candidates,
    )
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
