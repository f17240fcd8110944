"""What an evaluation's caller chooses about its features, as plain values (no torch).

:class:`FeatureChoices` holds the fields and defaults of
:class:`comode.evaluate.options.FeatureOptions`, which adds what turns them into a network
and the way it runs.  They live here, apart, so that the `evaluate` commands can declare
their options with these defaults without importing torch (their `--help` stays fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from comode.data.config import TEST_CLIPS

if TYPE_CHECKING:  # an annotation only: comode.evaluate.network imports torch
    from comode.evaluate.network import ClipGeometry

__all__ = ["FeatureChoices"]


@dataclass(frozen=True)
class FeatureChoices:
    """The feature choices shared by every evaluation (defaults: what a checkpoint was trained on)."""

    # The network of checkpoint "random" (a checkpoint or exported backbone brings its own):
    # its backbone, channel scale and init seed, and the clip it is shown (default ClipGeometry).
    backbone: str | None = None
    width_multiplier: float = 1.0
    seed: int = 0
    geometry: ClipGeometry | None = None
    # Clip side (None: the side the model was trained on).
    size: int | None = None
    # Test clips per video, spread evenly over it (the paper's protocol: 10).  Fewer is
    # proportionally faster, for quick looks at large sets; reports record the number.
    clips: int = TEST_CLIPS
    # Feature cache (None: <out_dir>/features).
    cache_dir: str | Path | None = None
    # As in Inference; device as a string ("cpu", "cuda", "cuda:1"; None: CUDA when present).
    videos_per_batch: int = 8
    workers: int = 0
    device: str | None = None
    show_progress: bool = False
    # Which pathway's feature a multi-pathway network is scored on: "both" (each pathway's
    # part L2-normalised, side by side), "rgb" or "diff" (comode.evaluate.pathway_view).
    feature: str = "both"
