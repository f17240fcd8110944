"""The CoMoDe pretraining model, wired in one file.

Huang et al., "Self-supervised Video Representation Learning by Context and Motion
Decoupling", CVPR 2021 (arXiv 2104.00862).  A compressed video roughly decouples context
(I-frames, i.e. key frames) from motion (motion vectors, MVs).  One video backbone, the
V-Network, is trained with two pretext tasks that share it but have separate heads:

* context matching (Eq. 1): the pooled clip feature, through an MLP head, must match the
  embedding of an I-frame of the same video (I-Network + MLP head) against the I-frames of
  the other videos in the batch -- coarse, global, "what scene is this";
* motion prediction (Eq. 2): the clip feature MAP, through a transformer encoder-decoder,
  must predict the M-Network features of the motion vectors of the NEAR FUTURE window,
  point by point, against other positions / videos and against other windows of the same
  video (hard negatives) -- fine-grained, local, "what moves where next".

Only the V-Network is kept after pretraining (:meth:`CoMoDe.encode_clip`).

Shape alphabet: B batch, C channels, T time, H height, W width, D embedding dim,
N negatives (here K motion windows), L sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comode.models.backbones import BACKBONES, build_backbone
from comode.models.config import ModelConfig
from comode.models.heads import (
    ConvMotionPredictor,
    MLPHead,
    MotionPredictor,
    NormalisedPredictor,
    PointwiseMLP,
    rotate_vectors,
)

__all__ = ["CoMoDe", "CoMoDeOutput"]

# How predicted motion is scored (see CoMoDe's motion_objective).
MOTION_OBJECTIVES = ("infonce", "mse")
# What turns the clip's feature map into the predicted motion map (see CoMoDe's motion_predictor).
MOTION_PREDICTORS = ("transformer", "conv")
# The projection of the M-Network's map, and the end of the predicted map (see CoMoDe's motion_head).
MOTION_HEADS = ("linear", "mlp_bn")
# Channels of a motion-vector map: x and y.
MV_CHANNELS = 2
# What each pretext head reads of the V-Network's map (see CoMoDe's pathway_tasks).
PATHWAY_TASKS = ("shared", "split")
# With pathway_tasks="split": the pathway each task reads (comode.models.pathways).
TASK_PATHWAY = {"context": "rgb", "motion": "diff"}


@dataclass
class CoMoDeOutput:
    """What :meth:`CoMoDe.forward` returns; a branch that is switched off leaves ``None``.

    Attributes:
        clip_embedding: (B, D) clip context embedding (query of Eq. 1).
        iframe_embedding: (B, D) I-frame context embedding (key of Eq. 1).
        motion_prediction: (B, D, T', H', W') predicted future-motion features (query of Eq. 2).
        motion_target: (B, D, T', H', W') M-Network features of the true future MV window.
        motion_negatives: (B, K, D, T', H', W') M-Network features of K other MV windows of
            the same video (hard negatives of Eq. 2), or None when none were given.
        logits: (B, num_classes) of the classifier on the pooled V-Network features, when
            the model has one.
    """

    clip_embedding: Tensor | None = None
    iframe_embedding: Tensor | None = None
    motion_prediction: Tensor | None = None
    motion_target: Tensor | None = None
    motion_negatives: Tensor | None = None
    # "infonce": the motion tensors are features (B, D, ...); "mse" (ablation): they are
    # MV values (B, 2, ...) on the prediction grid, target and negatives average-pooled.
    motion_objective: str = "infonce"
    # (B, num_classes) classifier logits of a model built with num_classes (the
    # supervised_aux task, paper Table 6); None otherwise.
    logits: Tensor | None = None


def _with_rotations(mv_future: Tensor, mv_negatives: Tensor | None) -> Tensor:
    """(B, K + 3, 2, T, H, W): the hard-negative windows, then the future window with its
    vectors turned by 90, 180 and 270 degrees."""
    turned = torch.stack([rotate_vectors(mv_future, k) for k in (1, 2, 3)], dim=1)
    return turned if mv_negatives is None else torch.cat([mv_negatives, turned], dim=1)


def _global_average_pool(features: Tensor) -> Tensor:
    """(B, C, ...) -> (B, C): mean over every spatial / temporal axis."""
    return features.flatten(2).mean(dim=2)


def _task_channels(vnet: nn.Module, backbone: str, pathway_tasks: str) -> dict[str, slice]:
    """Channel slice of the V-Network map that each task ("context", "motion") reads.

    "shared": the whole map for both.  "split": each task's pathway of TASK_PATHWAY, whose
    channels sit where :class:`comode.models.pathways.Pathways` concatenates them.
    """
    if pathway_tasks == "shared":
        return {task: slice(None) for task in TASK_PATHWAY}
    channels = getattr(vnet, "pathway_channels", {})
    missing = sorted(set(TASK_PATHWAY.values()) - set(channels))
    if missing:
        raise ValueError(
            f"pathway_tasks='split' needs a V-Network with an RGB and a difference pathway (e.g. r3d_26_rgbdiff); "
            f"{backbone!r} has pathways {sorted(channels) or ['rgb']}"
        )
    starts, offset = {}, 0
    for name, width in channels.items():  # Pathways' concatenation order
        starts[name] = slice(offset, offset + width)
        offset += width
    return {task: starts[pathway] for task, pathway in TASK_PATHWAY.items()}


def _check_backbone_role(name: str, role: str, expected_input: str) -> None:
    if name not in BACKBONES:
        raise KeyError(f"unknown {role} backbone {name!r}; known: {sorted(BACKBONES)}")
    kind = BACKBONES[name].input_kind
    if kind != expected_input:
        raise ValueError(f"{role} must be a {expected_input!r} backbone; {name!r} takes {kind!r} input")


class CoMoDe(nn.Module):
    """Context-and-motion-decoupling pretraining model (Huang et al., CVPR 2021).

    Args:
        config: what to build (:class:`comode.models.config.ModelConfig`, whose comments
            say what each field does; ``model:`` in a run's config).
        num_classes: also build a linear classifier on the pooled V-Network features, for
            the ``supervised_aux`` task (paper Table 6): :meth:`forward` then returns its
            logits too, from the same V-Network pass.  Its parameters are ``classifier.*``,
            so the V-Network is ``vnet.*`` in both tasks (export relies on it).

    A switched-off branch has no modules at all, so every parameter of the model receives a
    gradient from the enabled losses (what DDP without ``find_unused_parameters`` needs).
    """

    def __init__(self, config: ModelConfig, *, num_classes: int | None = None) -> None:
        super().__init__()
        if not (config.use_context or config.use_motion):
            raise ValueError("at least one of use_context / use_motion must be enabled")
        for name, allowed in (
            ("motion_objective", MOTION_OBJECTIVES),
            ("motion_predictor", MOTION_PREDICTORS),
            ("motion_head", MOTION_HEADS),
            ("pathway_tasks", PATHWAY_TASKS),
        ):
            if getattr(config, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(config, name)!r}")
        _check_backbone_role(config.backbone, "backbone (V-Network)", "clip")
        self.config = config
        self.motion_objective = config.motion_objective
        self.use_context = config.use_context
        self.use_motion = config.use_motion
        self.embed_dim = config.embed_dim
        self.blind = config.blind
        self.rotated_negatives = config.rotated_negatives
        # The same width and init for all three CNNs.
        cnn = {"width_multiplier": config.width_multiplier, "zero_init_residual": config.zero_init_residual}
        embed_dim, head_hidden = config.embed_dim, config.head_hidden

        self.vnet = build_backbone(config.backbone, **cnn)
        self.feature_dim = self.vnet.out_channels  # C of encode_clip's output
        # Channel range of the V-Network map that each task reads: all of it, or its pathway's.
        self.task_channels = _task_channels(self.vnet, config.backbone, config.pathway_tasks)
        context_channels = len(range(self.feature_dim)[self.task_channels["context"]])
        motion_channels = len(range(self.feature_dim)[self.task_channels["motion"]])

        if config.use_context:
            _check_backbone_role(config.inet, "inet (I-Network)", "frame")
            self.inet = build_backbone(config.inet, **cnn)
            self.clip_head = MLPHead(context_channels, head_hidden, embed_dim)
            self.iframe_head = MLPHead(self.inet.out_channels, head_hidden, embed_dim)

        if config.use_motion:
            infonce = config.motion_objective == "infonce"
            if infonce:
                _check_backbone_role(config.mnet, "mnet (M-Network)", "motion")
                self.mnet = build_backbone(config.mnet, **cnn)
                # Pointwise (1x1x1): keeps the grid, maps M-Net channels to D.
                self.motion_projection = (
                    nn.Conv3d(self.mnet.out_channels, embed_dim, kernel_size=1)
                    if config.motion_head == "linear"
                    else PointwiseMLP(self.mnet.out_channels, head_hidden, embed_dim)
                )
            predicted_channels = embed_dim if infonce else MV_CHANNELS
            if config.motion_predictor == "conv":
                predictor: nn.Module = ConvMotionPredictor(
                    motion_channels, hidden=config.transformer_dim, embed_dim=predicted_channels
                )
            else:
                predictor = MotionPredictor(
                    motion_channels,
                    transformer_dim=config.transformer_dim,
                    embed_dim=predicted_channels,
                    encoder_layers=config.encoder_layers,
                    decoder_layers=config.decoder_layers,
                    heads=config.heads,
                    dropout=config.dropout,
                )
            if infonce and config.motion_head == "mlp_bn":
                predictor = NormalisedPredictor(predictor, predicted_channels)
            self.motion_predictor = predictor
            self._predicts_one_slice = config.motion_predictor == "conv"
        self.classifier = None if num_classes is None else nn.Linear(self.feature_dim, num_classes)

    def encode_clip(self, clip: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, C) globally pooled V-Network features (for evaluation)."""
        return _global_average_pool(self.vnet(clip))

    def encode_motion(self, motion_vectors: Tensor) -> Tensor:
        """(B, 2, T, H, W) MV maps -> (B, D, T', H', W') M-Network features (motion targets)."""
        return self.motion_projection(self.mnet(motion_vectors))

    def forward(
        self,
        clip: Tensor,
        iframe: Tensor | None = None,
        mv_future: Tensor | None = None,
        mv_negatives: Tensor | None = None,
    ) -> CoMoDeOutput:
        """Run the enabled branches (and the classifier, when the model has one).

        Args:
            clip: (B, 3, T, H, W) RGB clip.
            iframe: (B, 3, H, W) an I-frame of the same video (needed when use_context).
            mv_future: (B, 2, T_m, H_m, W_m) MV maps of the window right after the clip
                (needed when use_motion), already scaled to a float range by the data side.
            mv_negatives: optional (B, K, 2, T_m, H_m, W_m) other MV windows of the same video.

        Returns:
            :class:`CoMoDeOutput`.
        """
        clip_map = self.vnet(clip)  # (B, C, T', H', W'), shared by both tasks
        features = clip_map
        if self.blind:  # the control: heads that cannot see the clip (shape kept, no gradient to vnet)
            features = torch.zeros_like(features).detach()
        out = CoMoDeOutput()
        if self.use_context:
            if iframe is None:
                raise ValueError("use_context=True needs an iframe (B, 3, H, W)")
            out.clip_embedding = self.clip_head(_global_average_pool(features[:, self.task_channels["context"]]))
            out.iframe_embedding = self.iframe_head(_global_average_pool(self.inet(iframe)))
        if self.use_motion:
            if mv_future is None:
                raise ValueError("use_motion=True needs mv_future (B, 2, T, H, W)")
            motion_features = features[:, self.task_channels["motion"]]  # (B, C_motion, T', H', W')
            if self.motion_objective == "mse":
                # The V-Network's grid; one time slice (the window's mean motion) for the conv
                # predictor, which predicts one slice per window.
                frames = 1 if self._predicts_one_slice else motion_features.shape[2]
                target_grid = (frames, *motion_features.shape[3:])
                out.motion_target = F.adaptive_avg_pool3d(mv_future, target_grid)  # (B, 2, T', H', W')
                if mv_negatives is not None:
                    pooled = F.adaptive_avg_pool3d(mv_negatives.flatten(0, 1), target_grid)
                    out.motion_negatives = pooled.unflatten(0, mv_negatives.shape[:2])  # (B, K, 2, T', H', W')
                out.motion_objective = "mse"
            else:
                if self.rotated_negatives:
                    mv_negatives = _with_rotations(mv_future, mv_negatives)
                out.motion_target, out.motion_negatives = self._encode_motion_windows(mv_future, mv_negatives)
                target_grid = tuple(out.motion_target.shape[2:])
            out.motion_prediction = self.motion_predictor(motion_features, target_grid)
        if self.classifier is not None:
            out.logits = self.classifier(_global_average_pool(clip_map))  # pooled as encode_clip does
        return out

    def _encode_motion_windows(self, mv_future: Tensor, mv_negatives: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One M-Network pass over the future window and the K negative windows.

        Returns (B, D, T', H', W') and (B, K, D, T', H', W') (or None).
        """
        if mv_negatives is None:
            return self.encode_motion(mv_future), None
        if (
            mv_negatives.ndim != 6
            or mv_negatives.shape[0] != mv_future.shape[0]
            or mv_negatives.shape[2:] != mv_future.shape[1:]
        ):
            raise ValueError(
                f"mv_negatives must be (B, K, 2, T, H, W) matching mv_future {tuple(mv_future.shape)}, "
                f"got {tuple(mv_negatives.shape)}"
            )
        windows = torch.cat([mv_future.unsqueeze(1), mv_negatives], dim=1)  # (B, 1+K, 2, T, H, W)
        encoded = self.encode_motion(windows.flatten(0, 1))  # (B*(1+K), D, T', H', W')
        encoded = encoded.unflatten(0, windows.shape[:2])  # (B, 1+K, D, T', H', W')
        return encoded[:, 0], encoded[:, 1:]
