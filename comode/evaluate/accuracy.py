"""Top-k classification accuracy (shared by the linear probe and finetuning)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["top_k_accuracy"]


def top_k_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top1": ..., "top5": ...}: fraction of rows whose label is among the k highest scores.

    scores (N, classes), labels (N,).  k above the number of classes counts every class
    (so top-5 with 2 classes is 1.0).  Ties at the boundary go to the lower class index.
    """
    if scores.shape[0] == 0:
        return {f"top{k}": 0.0 for k in ks}
    order = torch.sort(scores.float(), dim=1, descending=True, stable=True).indices
    correct = order == labels.view(-1, 1)
    n = scores.shape[0]
    return {f"top{k}": int(correct[:, :k].any(dim=1).sum()) / n for k in ks}
