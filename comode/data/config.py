"""What a pretraining sample is: :class:`DataConfig`, the ``data:`` section of a run's config
(:class:`comode.train.config.PretrainConfig`), and the bounds on its sizes.

Defaults are the paper's (Huang et al., CVPR 2021, Sec. 4.1) unless a comment says they
come from the authors' released code or are a choice of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DataConfig", "MAX_SIZE", "MAX_CLIP_FRAMES", "MAX_CLIP_STRIDE", "TEST_CLIPS"]

# Bounds on sizes, so that a typo cannot ask for hundreds of GB (data.size=100000 did):
# far above any sensible run (the paper's clips are 16 x 112 x 112, stride 4).
MAX_SIZE = 1024
MAX_CLIP_FRAMES = 256
MAX_CLIP_STRIDE = 64
# Test clips per video in evaluation, spread evenly over it (the paper's protocol: 10);
# here, not in comode.data.frames, so that the CLI reads it without importing numpy.
TEST_CLIPS = 10


@dataclass(frozen=True)
class DataConfig:
    # GLOBAL batch (all ranks together; each of W ranks gets batch_size / W).  Paper: 64.
    batch_size: int = 64
    # Spatial size of the training clips and I-frames (paper: 112x112 crops).
    size: int = 112
    # Store split the videos come from: "1" = UCF101/HMDB51 split 1, the paper's protocol
    # (null = every complete video in the store, e.g. a folder dataset for a demo).
    split: str | None = "1"
    # Which side of that split: pretraining uses the train videos only, so the test videos
    # stay unseen for evaluation.
    subset: str | None = "train"
    # Where the motion target lies (paper Table 4 ablation): "future" = the 8 MV frames
    # starting 2 frames after the clip (the method); "current" = 8 MV frames in the middle
    # of the clip itself (what the clip shows, no prediction).
    motion_window: Literal["future", "current"] = "future"
    # DataLoader worker processes per rank.  Clip decoding (MPEG-2) is CPU-bound: about one
    # worker per few clips/s of throughput (docs/performance.md); 0 = load in the training
    # process (debugging).
    workers: int = 8
    # Frames of the training clip and their stride (paper and authors' code: 16 x 4, about
    # 2.4 s at 25 fps).  Evaluation uses the same clip (docs/evaluation.md).
    clip_frames: int = 16
    clip_stride: int = 4
    # Side of the MV maps after the crop; null = size // 2 (56 for 112: the M-Network's /16
    # then gives the V-Network's 7 -> 4 cells per side).
    mv_size: int | None = None
    # Smallest share of the frame's area a random crop keeps (SimCLR / the authors: 0.2).
    crop_scale: float = 0.2
    # What the MV maps of I-frames hold: "zero" (as stored: an I-frame has no vectors) or
    # "interpolate" (each cell the mean of the same cell in the nearest frames before and
    # after it that have a value, within the window and one frame either side: the P-frames
    # next to it).  Zero maps in a window give away where the GOP boundary falls, which
    # says nothing about the motion.
    iframe_mv: Literal["zero", "interpolate"] = "zero"
    # What P-frame cells without a vector (intra blocks; the store's mv_valid is 0) hold:
    # "zero" (as stored, read as "no motion") or "interpolate" (filled by the same rule
    # from the frames where that cell has a vector; those are then also the only sources
    # of the I-frame fill).  The encoder codes a block intra where it found no match
    # worth a vector (uncovered or new content, fast motion, flat areas): 0 there tells the
    # motion target "still" without evidence.  A store written before schema_minor 4 has
    # no mask: the cells stay 0 and one warning says so (docs/training.md).
    missing_mv: Literal["zero", "interpolate"] = "zero"
    # Camera-motion compensation of the MV maps: "none", or "median": subtract each frame's
    # median vector over the grid (the dominant motion, usually the camera's pan), so the
    # targets are the motion of things relative to the background.
    camera_compensation: Literal["none", "median"] = "none"
    # Replace a hard-negative MV window closer than this to the positive (relative L2
    # distance of the maps, 0 = identical) by another window of the video; 0 = keep every
    # drawn window.  A window that moves exactly like the positive -- the same oscillation
    # a period later, or any window of a shot in which nothing moves -- cannot be told
    # apart from it by any predictor.
    negative_min_distance: float = 0.0
