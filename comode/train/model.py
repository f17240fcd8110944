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

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from comode.train.backbones import BACKBONES, build_backbone
from comode.train.heads import (
    ConvMotionPredictor,
    MLPHead,
    MotionPredictor,
    NormalisedPredictor,
    PointwiseMLP,
    rotate_vectors,
)
from comode.train.losses import (
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

if TYPE_CHECKING:
    from comode.train.config import PretrainConfig

__all__ = ["CoMoDe", "CoMoDeOutput", "SupervisedCoMoDe", "build_model", "compute_losses"]

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
# With pathway_tasks="split": the pathway each task reads (comode.train.pathways).
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
    """

    clip_embedding: Tensor | None = None
    iframe_embedding: Tensor | None = None
    motion_prediction: Tensor | None = None
    motion_target: Tensor | None = None
    motion_negatives: Tensor | None = None
    # "infonce": the motion tensors are features (B, D, ...); "mse" (ablation): they are
    # MV values (B, 2, ...) on the prediction grid, target and negatives average-pooled.
    motion_objective: str = "infonce"


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
    channels sit where :class:`comode.train.pathways.Pathways` concatenates them.
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

    Args (all keyword-only):
        backbone: V-Network, a "clip" entry of ``BACKBONES`` (paper: c3d, r3d_26, r21d_26).
        width_multiplier: channel scale of all three CNNs (1.0 = paper; 0.125 for CPU tests).
        embed_dim: D, dimension of both contrastive spaces (context and motion), 512.
        head_hidden: hidden width of the two context MLP heads, 2048.
        transformer_dim: model width of the motion encoder-decoder, 512.
        encoder_layers: transformer encoder layers over the clip tokens, 2.
        decoder_layers: transformer decoder layers producing the future-motion tokens, 4.
        heads: attention heads (transformer_dim must be divisible by it), 8.
        mnet: M-Network, a "motion" entry of ``BACKBONES`` (2-channel MV input), r3d_10.
        inet: I-Network, a "frame" entry of ``BACKBONES``, r2d_10.
        use_context: build and train the context-matching branch (ablation switch).
        use_motion: build and train the motion-prediction branch (ablation switch).
        dropout: dropout inside the transformer layers (PyTorch's default 0.1).
        motion_objective: "infonce" (the method: predict M-Network features, pointwise
            InfoNCE) or "mse" (ablation, paper Table 1: predict the MV values on the
            V-Network's feature grid, squared error; no M-Network).
        motion_predictor: "transformer" (the paper's encoder-decoder) or "conv" (a
            spatially aligned per-cell predictor, :class:`ConvMotionPredictor`; its hidden
            width is ``transformer_dim``).
        motion_head: "linear" (a 1x1x1 projection of the M-Network map to D) or "mlp_bn"
            (:class:`PointwiseMLP` on the M-Network map, and BN on the predicted map).
        zero_init_residual: every ResNet (V-, I- and M-Network) starts each residual block
            as the identity (the last BN's scale at 0).
        blind: a diagnostic control: the pretext heads see zeros instead of the V-Network's
            map, so they cannot use the clip; their accuracy is the measured blind level of
            each task (the V-Network then gets no gradient).
        rotated_negatives: ours: the future window with its vectors turned by 90, 180 and
            270 degrees joins the hard negatives (:func:`rotate_vectors`).
        pathway_tasks: "shared" (the paper: both heads read the whole V-Network map) or,
            ours, "split" for a two-pathway V-Network (``*_rgbdiff``): context matching
            reads the RGB pathway's channels and motion prediction the difference
            pathway's.  Why: on one shared map, context matching pulls the motion features
            towards appearance and retrieval follows the scene (docs/training.md); split,
            each pathway learns its own task and one checkpoint carries both.

    A switched-off branch has no modules at all, so every parameter of the model receives a
    gradient from the enabled losses (what DDP without ``find_unused_parameters`` needs).
    """

    def __init__(
        self,
        *,
        backbone: str = "r3d_26",
        width_multiplier: float = 1.0,
        embed_dim: int = 512,
        head_hidden: int = 2048,
        transformer_dim: int = 512,
        encoder_layers: int = 2,
        decoder_layers: int = 4,
        heads: int = 8,
        mnet: str = "r3d_10",
        inet: str = "r2d_10",
        use_context: bool = True,
        use_motion: bool = True,
        dropout: float = 0.1,
        motion_objective: str = "infonce",
        motion_predictor: str = "transformer",
        motion_head: str = "linear",
        zero_init_residual: bool = False,
        blind: bool = False,
        rotated_negatives: bool = False,
        pathway_tasks: str = "shared",
    ) -> None:
        super().__init__()
        if not (use_context or use_motion):
            raise ValueError("at least one of use_context / use_motion must be enabled")
        for name, value, allowed in (
            ("motion_objective", motion_objective, MOTION_OBJECTIVES),
            ("motion_predictor", motion_predictor, MOTION_PREDICTORS),
            ("motion_head", motion_head, MOTION_HEADS),
            ("pathway_tasks", pathway_tasks, PATHWAY_TASKS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        self.motion_objective = motion_objective
        _check_backbone_role(backbone, "backbone (V-Network)", "clip")
        self.use_context = use_context
        self.use_motion = use_motion
        self.embed_dim = embed_dim
        self.blind = blind

        self.vnet = build_backbone(backbone, width_multiplier=width_multiplier, zero_init_residual=zero_init_residual)
        self.feature_dim = self.vnet.out_channels  # C of encode_clip's output
        # Channel range of the V-Network map that each task reads: all of it, or its pathway's.
        self.task_channels = _task_channels(self.vnet, backbone, pathway_tasks)
        context_channels = len(range(self.feature_dim)[self.task_channels["context"]])
        motion_channels = len(range(self.feature_dim)[self.task_channels["motion"]])

        if use_context:
            _check_backbone_role(inet, "inet (I-Network)", "frame")
            self.inet = build_backbone(inet, width_multiplier=width_multiplier, zero_init_residual=zero_init_residual)
            self.clip_head = MLPHead(context_channels, head_hidden, embed_dim)
            self.iframe_head = MLPHead(self.inet.out_channels, head_hidden, embed_dim)

        if use_motion:
            infonce = motion_objective == "infonce"
            if infonce:
                _check_backbone_role(mnet, "mnet (M-Network)", "motion")
                self.mnet = build_backbone(
                    mnet, width_multiplier=width_multiplier, zero_init_residual=zero_init_residual
                )
                # Pointwise (1x1x1): keeps the grid, maps M-Net channels to D.
                self.motion_projection = (
                    nn.Conv3d(self.mnet.out_channels, embed_dim, kernel_size=1)
                    if motion_head == "linear"
                    else PointwiseMLP(self.mnet.out_channels, head_hidden, embed_dim)
                )
            predicted_channels = embed_dim if infonce else MV_CHANNELS
            if motion_predictor == "conv":
                predictor: nn.Module = ConvMotionPredictor(
                    motion_channels, hidden=transformer_dim, embed_dim=predicted_channels
                )
            else:
                predictor = MotionPredictor(
                    motion_channels,
                    transformer_dim=transformer_dim,
                    embed_dim=predicted_channels,
                    encoder_layers=encoder_layers,
                    decoder_layers=decoder_layers,
                    heads=heads,
                    dropout=dropout,
                )
            if infonce and motion_head == "mlp_bn":
                predictor = NormalisedPredictor(predictor, predicted_channels)
            self.motion_predictor = predictor
            self._predicts_one_slice = motion_predictor == "conv"
        self.rotated_negatives = rotated_negatives

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
    ) -> Any:
        """Run the enabled branches.

        Args:
            clip: (B, 3, T, H, W) RGB clip.
            iframe: (B, 3, H, W) an I-frame of the same video (needed when use_context).
            mv_future: (B, 2, T_m, H_m, W_m) MV maps of the window right after the clip
                (needed when use_motion), already scaled to a float range by the data side.
            mv_negatives: optional (B, K, 2, T_m, H_m, W_m) other MV windows of the same video.

        Returns:
            :class:`CoMoDeOutput` (:class:`SupervisedCoMoDe`: with its logits, see :meth:`_outputs`).
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
        return self._outputs(out, clip_map)

    def _outputs(self, out: CoMoDeOutput, clip_map: Tensor) -> Any:
        """What forward returns, given the V-Network's (B, C, T', H', W') map: the pretext
        outputs here; a subclass adds what it computes from the same map (one V-Network pass)."""
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
        gather: optional all-gather for keys under DDP (see :mod:`comode.train.losses`).
        motion_candidates: the candidate set of the pointwise motion loss ("all": paper
            Eq. 2; "same_position"), see :func:`comode.train.losses.pointwise_info_nce`.

    Returns:
        dict of scalar tensors: ``loss`` (to back-propagate), ``loss_context``,
        ``loss_motion``, ``acc_context``, ``acc_motion``, and ``blind_loss`` (of ``loss``), ``blind_loss_context``,
        ``blind_acc_context``, ``blind_loss_motion``, ``blind_acc_motion``: what a predictor
        that ignores its input scores on the same candidates (for InfoNCE ln and 1 / the
        candidates it cannot rule out, :mod:`comode.train.losses`; for the MSE ablation the
        squared error of predicting the batch's mean target, and 1 / (1 + K)), and
        ``key_spread_context`` / ``key_spread_motion`` (:func:`comode.train.losses.key_spread`
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


class SupervisedCoMoDe(CoMoDe):
    """CoMoDe plus a linear classifier on the pooled V-Network features (paper Table 6).

    forward(...) -> (CoMoDeOutput, logits (B, num_classes)).  The V-Network runs once: the
    classifier reads the same feature map as the pretext heads.  Parameter names are CoMoDe's
    plus ``classifier.*``, so the V-Network is ``vnet.*`` in both tasks (export relies on it).
    """

    def __init__(self, *, num_classes: int, **comode_kwargs: Any) -> None:
        super().__init__(**comode_kwargs)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def _outputs(self, out: CoMoDeOutput, clip_map: Tensor) -> tuple[CoMoDeOutput, Tensor]:
        return out, self.classifier(_global_average_pool(clip_map))  # pooled as encode_clip does


def build_model(config: "PretrainConfig", *, num_classes: int) -> nn.Module:
    """The training model of ``config.task`` (on the CPU, freshly initialised)."""
    kwargs = asdict(config.model)
    if config.task == "supervised_aux":
        return SupervisedCoMoDe(num_classes=num_classes, **kwargs)
    return CoMoDe(**kwargs)
