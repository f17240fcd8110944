"""Losses of CoMoDe (Huang et al., CVPR 2021, arXiv 2104.00862), as pure functions.

Shape alphabet: B batch, C channels, T time, H height, W width, D embedding dim,
N negatives, L sequence length.

* :func:`info_nce` -- context matching J_I (paper Eq. 1): a clip embedding must pick the
  I-frame embedding of its own video among the I-frames of the batch.
* :func:`pointwise_info_nce` -- motion prediction J_M (paper Eq. 2): every predicted
  future-motion feature at position (t, y, x) must pick the M-Network feature at the same
  position of the true future motion-vector window.
* :func:`joint_loss` -- J = (1 - alpha) * J_I + alpha * J_M.
* :func:`mse_motion_loss` -- ablation: regress motion-vector values instead.

Distributed training: both contrastive losses take ``gather``, a callable that all-gathers
the KEYS (targets) across ranks, e.g. :func:`comode.distributed.gather_from_all_ranks`.  Queries and positives
stay local: local query i of rank r matches global key ``r * B_local + i`` (all ranks must
use the same local batch size, as ``all_gather`` requires); every other gathered key is a
negative.  With ``gather=None`` everything is local.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from comode.distributed import rank, world_size

__all__ = [
    "Gather",
    "MOTION_CANDIDATES",
    "BlindLevel",
    "info_nce",
    "info_nce_blind_level",
    "pointwise_info_nce",
    "pointwise_blind_level",
    "joint_loss",
    "mse_motion_loss",
    "mse_window_accuracy",
    "key_spread",
]

Gather = Callable[[Tensor], Tensor]
"""(B_local, ...) -> (world_size * B_local, ...), local slice at rows [rank*B_local, ...)."""

# Which keys a predicted motion cell is scored against (see pointwise_info_nce).
MOTION_CANDIDATES = ("all", "same_position")


class BlindLevel(NamedTuple):
    """What a predictor that ignores its input scores on a contrastive task: it can tell
    apart nothing but what it gets for free, so it spreads its bet evenly over the
    ``candidates`` it cannot rule out.  accuracy = 1 / candidates, loss = ln(candidates)."""

    candidates: int

    @property
    def accuracy(self) -> float:
        return 1.0 / self.candidates

    @property
    def loss(self) -> float:
        return math.log(self.candidates)


def info_nce_blind_level(batch: int, *, negatives: int = 0, gathered: bool = False) -> BlindLevel:
    """Blind level of :func:`info_nce`: query i sees the keys of the whole (gathered) batch
    plus its own ``negatives``, and nothing but the content of the query tells them apart."""
    return BlindLevel(batch * (world_size() if gathered else 1) + negatives)


def pointwise_blind_level(batch: int, *, hard_negatives: int, gathered: bool = False) -> BlindLevel:
    """Blind level of :func:`pointwise_info_nce`, for either candidate set.

    A predictor that never looks at the clip still knows WHERE each predicted cell is:
    learned per-cell queries, and zero-padded convolutions in the M-Network that make a
    cell's target feature depend on its position, give that for free.  So it can rule out
    every candidate at another position, and what is left at the cell is the B videos of
    the (gathered) batch plus the K hard windows of its own video: 1 / (B + K), not
    1 / (B P + K P).  With ``candidates="same_position"`` that set is exactly the candidate
    set.  (At B = 8, K = 3: 9.1 % and ln 11 = 2.398.)"""
    return BlindLevel(batch * (world_size() if gathered else 1) + hard_negatives)


def _gathered_with_offset(keys: Tensor, gather: Gather | None) -> tuple[Tensor, int]:
    """Keys of all ranks (B_all, ...) and the row where this rank's keys start."""
    if gather is None:
        return keys, 0
    all_keys = gather(keys)
    return all_keys, rank() * keys.shape[0]


def _cross_entropy_and_accuracy(logits: Tensor, labels: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of logits / temperature, and top-1 accuracy of ``labels``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    loss = F.cross_entropy(logits / temperature, labels)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return loss, accuracy


def info_nce(
    query: Tensor,
    key: Tensor,
    *,
    temperature: float = 0.1,
    negatives: Tensor | None = None,
    gather: Gather | None = None,
) -> tuple[Tensor, Tensor]:
    """InfoNCE between paired embeddings: context matching J_I (paper Eq. 1).

    For query i the positive is key i; the negatives are all other keys of the batch (of all
    ranks when ``gather`` is given) plus, if given, its own extra ``negatives[i]``.  The loss
    is cross-entropy over cosine similarities / temperature.  It is one-directional
    (query -> key), as Eq. 1 is written: clip embedding -> I-frame embeddings.

    Args:
        query: (B, D) e.g. clip embeddings; L2-normalised here.
        key: (B, D) e.g. I-frame embeddings; L2-normalised here.
        temperature: tau of Eq. 1.
        negatives: optional (B, N, D) extra negatives per query; L2-normalised here.
        gather: optional all-gather for the keys (see module docstring).

    Returns:
        (loss, accuracy): scalar mean loss; top-1 accuracy of the positive (no grad).
    """
    if query.ndim != 2 or query.shape != key.shape:
        raise ValueError(f"query and key must both be (B, D), got {tuple(query.shape)}, {tuple(key.shape)}")
    query = F.normalize(query, dim=1)
    all_keys, offset = _gathered_with_offset(F.normalize(key, dim=1), gather)
    logits = query @ all_keys.T  # (B, B_all): positives at column offset + i
    if negatives is not None:
        if negatives.ndim != 3 or negatives.shape[::2] != (query.shape[0], query.shape[1]):
            raise ValueError(f"negatives must be (B, N, D), got {tuple(negatives.shape)}")
        extra = torch.einsum("bd,bnd->bn", query, F.normalize(negatives, dim=2))  # (B, N)
        logits = torch.cat([logits, extra], dim=1)
    labels = offset + torch.arange(query.shape[0], device=query.device)
    return _cross_entropy_and_accuracy(logits, labels, temperature)


def pointwise_info_nce(
    pred: Tensor,
    target: Tensor,
    *,
    temperature: float = 0.1,
    hard_negatives: Tensor | None = None,
    gather: Gather | None = None,
    candidates: str = "all",
) -> tuple[Tensor, Tensor]:
    """Pointwise InfoNCE between predicted and true future-motion features: J_M (paper Eq. 2).

    Every position p = (b, t, y, x) is one query ``pred[b, :, t, y, x]``.  Its positive is
    ``target[b, :, t, y, x]`` (same video, same position).  Its negatives depend on
    ``candidates``:

    * ``"all"`` (paper Eq. 2: "negatives from other positions and other videos, plus hard
      negatives from the same video at other times"): ``target`` at every other position
      of every video in the batch (of every rank when ``gather`` is given) -- includes
      other positions of video b itself -- and ``hard_negatives[b, k]`` at ALL positions,
      for all k (the M-Network features of K other motion-vector windows of the same video
      b, at other times).  Video b's hard negatives are not shown to other videos' queries.
      Logits are (B*P, B_all*P + K*P) with P = T*H*W, one matmul each; for B=8, P=2*7*7,
      K=3 that is 784 x 1078.
    * ``"same_position"``: only ``target`` of every video of the batch at the SAME position
      and ``hard_negatives[b, k]`` at the same position: B_all + K candidates per query.
      Position then gives nothing away (a predictor must tell the videos and the times
      apart), and the blind level is exactly 1 / (B_all + K) by construction.

    Both have the same blind level (:func:`pointwise_blind_level`).  All features are
    L2-normalised along D; the loss is the mean over all B*T*H*W queries.

    Args:
        pred: (B, D, T, H, W) predicted features.
        target: (B, D, T, H, W) M-Network features of the true future window.
        temperature: tau of Eq. 2.
        hard_negatives: optional (B, K, D, T, H, W).
        gather: optional all-gather for ``target`` (see module docstring).
        candidates: ``"all"`` or ``"same_position"`` (see above).

    Returns:
        (loss, accuracy): scalar mean loss; top-1 accuracy over positions (no grad).
    """
    if pred.ndim != 5 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both be (B, D, T, H, W), got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    if candidates not in MOTION_CANDIDATES:
        raise ValueError(f"candidates must be one of {list(MOTION_CANDIDATES)}, got {candidates!r}")
    batch, dim = pred.shape[:2]
    if hard_negatives is not None and (
        hard_negatives.ndim != 6 or hard_negatives.shape[0] != batch or hard_negatives.shape[2:] != pred.shape[1:]
    ):
        raise ValueError(f"hard_negatives must be (B, K, D, T, H, W) matching pred, got {tuple(hard_negatives.shape)}")
    queries = _positions_as_rows(F.normalize(pred, dim=1)).view(batch, -1, dim)  # (B, P, D)
    positions = queries.shape[1]
    all_targets, offset = _gathered_with_offset(F.normalize(target, dim=1), gather)
    keys = _positions_as_rows(all_targets).view(all_targets.shape[0], positions, dim)  # (B_all, P, D)
    # (B, K, D, T, H, W) -> (B, K, P, D)
    hard = None if hard_negatives is None else F.normalize(hard_negatives, dim=2).flatten(3).transpose(2, 3)
    if candidates == "same_position":
        logits = torch.einsum("bpd,cpd->bpc", queries, keys)  # (B, P, B_all): positive at column offset + b
        if hard is not None:
            logits = torch.cat([logits, torch.einsum("bpd,bkpd->bpk", queries, hard)], dim=2)
        labels = (offset + torch.arange(batch, device=pred.device)).repeat_interleave(positions)
        return _cross_entropy_and_accuracy(logits.reshape(batch * positions, -1), labels, temperature)
    rows = queries.reshape(-1, dim)  # (B*P, D), row = b*P + p
    logits = rows @ keys.reshape(-1, dim).T  # (B*P, B_all*P): positive of row r at column offset*P + r
    if hard is not None:
        hard_logits = torch.einsum("bpd,bnd->bpn", queries, hard.reshape(batch, -1, dim))  # (B, P, K*P)
        logits = torch.cat([logits, hard_logits.reshape(batch * positions, -1)], dim=1)
    labels = offset * positions + torch.arange(rows.shape[0], device=pred.device)
    return _cross_entropy_and_accuracy(logits, labels, temperature)


def _positions_as_rows(features: Tensor) -> Tensor:
    """(B, D, T, H, W) -> (B*T*H*W, D), row index b*P + (t*H + y)*W + x."""
    return features.flatten(2).transpose(1, 2).reshape(-1, features.shape[1])


@torch.no_grad()
def key_spread(keys: Tensor) -> Tensor:
    """How much the (L2-normalised) keys of a contrastive task differ between videos.

    ``keys``: (B, D, ...) one key per video of the batch at each position ``...`` (I-frame
    embeddings (B, D); M-Network targets (B, D, T, H, W)).  At each position, the mean
    squared distance of a video's unit key to the batch's mean key, 1 - |mean key|^2;
    averaged over the positions.  0 when every video gives the same key, near 1 for keys
    spread over the sphere.  Why it is logged: when the keys stop depending on the video,
    InfoNCE sits at ln(candidates) and its gradient to the predictor vanishes, so the run
    looks like a task that is merely still blind; the spread tells the two apart.
    """
    unit = F.normalize(keys.float().reshape(*keys.shape[:2], -1), dim=1)  # (B, D, positions)
    return (1.0 - unit.mean(dim=0).pow(2).sum(dim=0)).mean()


def joint_loss(context_loss: Tensor, motion_loss: Tensor, *, alpha: float = 0.5) -> Tensor:
    """J = (1 - alpha) * J_I + alpha * J_M: the weighted sum of the two pretext tasks."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return (1.0 - alpha) * context_loss + alpha * motion_loss


def mse_motion_loss(pred_mv: Tensor, target_mv: Tensor) -> Tensor:
    """Ablation: regress motion-vector values instead of contrasting motion features.

    Args:
        pred_mv: (B, 2, T, H, W) predicted motion vectors (x, y) on the prediction grid.
        target_mv: (B, 2, T_m, H_m, W_m) true motion vectors (in the same units); when its
            grid differs from the prediction's it is average-pooled onto it (a motion vector
            per cell is the mean displacement of that cell).

    Returns:
        Scalar mean squared error.
    """
    if pred_mv.ndim != 5 or target_mv.ndim != 5 or pred_mv.shape[:2] != target_mv.shape[:2]:
        raise ValueError(
            f"pred_mv and target_mv must be (B, 2, T, H, W), got {tuple(pred_mv.shape)}, {tuple(target_mv.shape)}"
        )
    if pred_mv.shape[2:] != target_mv.shape[2:]:
        target_mv = F.adaptive_avg_pool3d(target_mv, pred_mv.shape[2:])
    return F.mse_loss(pred_mv, target_mv)


@torch.no_grad()
def mse_window_accuracy(pred_mv: Tensor, target_mv: Tensor, negative_mvs: Tensor | None) -> Tensor:
    """Pretext top-1 accuracy of the MSE ablation, comparable with the InfoNCE one: the share
    of samples whose prediction is closer (mean squared error) to their true window than to
    each of their K hard-negative windows.  Chance = 1 / (1 + K).

    Args:
        pred_mv: (B, 2, T, H, W) predicted motion vectors.
        target_mv: (B, 2, T, H, W) true window, on the prediction grid.
        negative_mvs: (B, K, 2, T, H, W) other windows of the same videos, or None (then
            every sample counts as correct: there is nothing to confuse it with).
    """
    if negative_mvs is None:
        return torch.ones((), device=pred_mv.device)
    windows = torch.cat([target_mv.unsqueeze(1), negative_mvs], dim=1)  # (B, 1+K, 2, T, H, W)
    errors = (windows - pred_mv.unsqueeze(1)).pow(2).flatten(2).mean(dim=2)  # (B, 1+K)
    return (errors.argmin(dim=1) == 0).float().mean()
