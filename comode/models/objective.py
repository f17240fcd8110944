"""What a training step minimises, from one :class:`~comode.models.model.CoMoDeOutput`:
the paper's objective J = (1 - alpha) J_context + alpha J_motion (:func:`compute_losses`),
each task's blind level beside it, and for the supervised_aux task the cross-entropy on
the labels (:func:`compute_objective`).  The losses themselves are in
:mod:`comode.models.losses`.

Shape alphabet: B batch, D embedding dim, K hard-negative windows.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from comode.models.config import LossConfig
from comode.models.losses import (
    Gather,
    info_nce,
    info_nce_blind_level,
    joint_loss,
    key_spread,
    mse_motion_loss,
    mse_window_accuracy,
    pointwise_blind_level,
    pointwise_info_nce,
)
from comode.models.model import CoMoDeOutput

__all__ = ["LOSS_KEYS", "compute_losses", "compute_objective"]

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


def compute_losses(
    out: CoMoDeOutput,
    *,
    temperature: float = 0.1,
    alpha: float = 0.5,
    gather: Gather | None = None,
    motion_candidates: str = "all",
) -> dict[str, Tensor]:
    """The pretraining objective J = (1 - alpha) * J_I + alpha * J_M from a forward output,
    and each task's blind level beside it.

    Args:
        out: a :class:`CoMoDeOutput`.
        temperature: tau of both InfoNCE losses.
        alpha: weight of the motion loss (paper's trade-off between the two tasks).
        gather: optional all-gather for keys under DDP (see :mod:`comode.models.losses`).
        motion_candidates: the candidate set of the pointwise motion loss ("all": paper
            Eq. 2; "same_position"), see :func:`comode.models.losses.pointwise_info_nce`.

    Returns:
        dict of scalar tensors: ``loss`` (to back-propagate), ``loss_context``,
        ``loss_motion``, ``acc_context``, ``acc_motion``, and ``blind_loss`` (of ``loss``), ``blind_loss_context``,
        ``blind_acc_context``, ``blind_loss_motion``, ``blind_acc_motion``: what a predictor
        that ignores its input scores on the same candidates (for InfoNCE ln and 1 / the
        candidates it cannot rule out, :mod:`comode.models.losses`; for the MSE ablation the
        squared error of predicting the batch's mean target, and 1 / (1 + K)), and
        ``key_spread_context`` / ``key_spread_motion`` (:func:`comode.models.losses.key_spread`
        of the I-frame embeddings / the M-Network targets; 0 = collapsed keys).  When only
        one branch is enabled, ``loss`` is that branch's loss unweighted, and the disabled
        branch's entries are NaN ("not computed", never mistaken for a real 0).
    """
    has_context = out.clip_embedding is not None and out.iframe_embedding is not None
    has_motion = out.motion_prediction is not None and out.motion_target is not None
    if not (has_context or has_motion):
        raise ValueError("the output has neither context nor motion predictions")
    reference = out.clip_embedding if has_context else out.motion_prediction

    def constant(value: float) -> Tensor:
        return torch.full((), float(value), device=reference.device)

    missing = constant(math.nan)
    loss_context = acc_context = loss_motion = acc_motion = missing
    spread_context = spread_motion = missing
    blind_loss_context = blind_acc_context = blind_loss_motion = blind_acc_motion = missing
    if has_context:
        loss_context, acc_context = info_nce(
            out.clip_embedding, out.iframe_embedding, temperature=temperature, gather=gather
        )
        blind = info_nce_blind_level(out.clip_embedding.shape[0], gathered=gather is not None)
        blind_loss_context, blind_acc_context = constant(blind.loss), constant(blind.accuracy)
        spread_context = key_spread(out.iframe_embedding)
    hard = 0 if out.motion_negatives is None else out.motion_negatives.shape[1]
    if has_motion and out.motion_objective == "mse":
        loss_motion = mse_motion_loss(out.motion_prediction, out.motion_target)
        acc_motion = mse_window_accuracy(out.motion_prediction, out.motion_target, out.motion_negatives)
        with torch.no_grad():  # the best constant prediction: the mean target (of this batch)
            target = out.motion_target
            blind_loss_motion = (target - target.mean(dim=0, keepdim=True)).pow(2).mean()
        blind_acc_motion = constant(1.0 / (1 + hard) if hard else 1.0)
    elif has_motion:
        loss_motion, acc_motion = pointwise_info_nce(
            out.motion_prediction,
            out.motion_target,
            temperature=temperature,
            hard_negatives=out.motion_negatives,
            gather=gather,
            candidates=motion_candidates,
        )
        blind = pointwise_blind_level(out.motion_prediction.shape[0], hard_negatives=hard, gathered=gather is not None)
        blind_loss_motion, blind_acc_motion = constant(blind.loss), constant(blind.accuracy)
        spread_motion = key_spread(out.motion_target)
    if has_context and has_motion:
        loss = joint_loss(loss_context, loss_motion, alpha=alpha)
        blind_loss = joint_loss(blind_loss_context, blind_loss_motion, alpha=alpha)
    else:
        loss = loss_context if has_context else loss_motion
        blind_loss = blind_loss_context if has_context else blind_loss_motion
    return {
        "loss": loss,
        "blind_loss": blind_loss,
        "loss_context": loss_context,
        "loss_motion": loss_motion,
        "acc_context": acc_context,
        "acc_motion": acc_motion,
        "blind_loss_context": blind_loss_context,
        "blind_acc_context": blind_acc_context,
        "blind_loss_motion": blind_loss_motion,
        "blind_acc_motion": blind_acc_motion,
        "key_spread_context": spread_context,
        "key_spread_motion": spread_motion,
    }


def _as_float32(out: CoMoDeOutput) -> CoMoDeOutput:
    """Losses in float32 even after a bf16 forward (InfoNCE logits / 0.1 need the precision)."""
    return dataclasses.replace(
        out,
        **{f.name: value.float() for f in dataclasses.fields(out) if isinstance(value := getattr(out, f.name), Tensor)},
    )


def compute_objective(
    out: CoMoDeOutput, labels: Tensor, *, config: LossConfig, gather: Gather | None
) -> dict[str, Tensor]:
    """The task's loss and its parts (the :data:`LOSS_KEYS`; NaN where not computed): the
    pretext objective (:func:`compute_losses`), plus cross-entropy on ``labels`` (B,) when
    the output has classifier logits (the supervised_aux task, paper Table 6)."""
    losses = compute_losses(
        _as_float32(out),
        temperature=config.temperature,
        alpha=config.alpha,
        gather=gather,
        motion_candidates=config.motion_candidates,
    )
    logits = out.logits
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
        "loss": cross_entropy + config.supervised_aux_weight * losses["loss"],
        "blind_loss": blind_supervised + config.supervised_aux_weight * losses["blind_loss"],
        "loss_supervised": cross_entropy,
        "acc_supervised": accuracy,
    }
