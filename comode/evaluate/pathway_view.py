"""Which part of a multi-pathway V-Network's feature an evaluation scores.

A two-pathway backbone (``*_rgbdiff``, :mod:`comode.models.pathways`) pools to the RGB
pathway's channels followed by the frame-difference pathway's.  Scored as one vector, the
part with more variance decides every cosine: on the sample set the RGB part made motion
retrieval follow the scene (docs/training.md).  So the default view, ``both``, L2-normalises
each pathway's part on its own before putting them side by side: a cosine over it is the
mean of the per-pathway cosines, and neither part drowns the other.  ``rgb`` and ``diff``
score one pathway alone, to see what each carries.

A single-pathway network has one part: every view it has is its feature unchanged, so
its numbers are those of earlier reports.

Shape alphabet: N videos, C channels.
"""

from __future__ import annotations

import numpy as np

from comode.models.backbones import BACKBONES

__all__ = ["PATHWAY_VIEWS", "pathway_view", "backbone_pathways"]

PATHWAY_VIEWS = ("both", "rgb", "diff")


def backbone_pathways(backbone: str) -> tuple[str, ...]:
    """The pathways of ``backbone`` in the order its features concatenate them."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}")
    return BACKBONES[backbone].pathways


def pathway_view(features: np.ndarray, pathways: tuple[str, ...], view: str) -> np.ndarray:
    """(N, C) -> (N, C'): the ``view`` of features whose channels are ``pathways``' parts,
    equally wide, side by side.

    Raises:
        ValueError: unknown view, a pathway the network does not have, or channels that do
            not split into equal parts.
    """
    if view not in PATHWAY_VIEWS:
        raise ValueError(f"--feature must be one of {list(PATHWAY_VIEWS)}, got {view!r}")
    if view != "both" and view not in pathways:
        raise ValueError(f"--feature {view}: this network has only the pathways {list(pathways)}")
    if len(pathways) == 1:
        return features
    if features.shape[1] % len(pathways):
        raise ValueError(f"{features.shape[1]} feature channels do not split into the pathways {list(pathways)}")
    parts = dict(zip(pathways, np.split(features, len(pathways), axis=1)))
    if view != "both":
        return parts[view]
    norms = [np.linalg.norm(part, axis=1, keepdims=True) for part in parts.values()]
    # sqrt(P): the whole vector keeps unit norm, so a dot product is the mean per-pathway cosine.
    scale = np.sqrt(len(parts))
    return np.concatenate(
        [part / np.maximum(norm, 1e-12) / scale for part, norm in zip(parts.values(), norms)], axis=1
    ).astype(features.dtype)
