"""What the model is and what it optimises: :class:`ModelConfig` (the ``model:`` section of
a run's config, exactly what :class:`comode.models.model.CoMoDe` takes) and
:class:`LossConfig` (the ``loss:`` section, what :func:`comode.models.objective.compute_objective`
takes).

Defaults are the paper's (Huang et al., CVPR 2021, Sec. 3-4) unless a comment says they
come from the authors' released code or are a choice of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ModelConfig", "LossConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """What :class:`comode.models.model.CoMoDe` builds (``model:`` in a run's config)."""

    # V-Network being pretrained.  R3D-26 is the paper's main backbone (it also reports
    # C3D and R(2+1)D-26); any "clip" entry of comode.models.backbones.BACKBONES works.
    backbone: str = "r3d_26"
    # Channel scale of all three CNNs.  1.0 = the paper; 0.125 makes a CPU-sized model for
    # tests and demos (64-channel V-Network output).
    width_multiplier: float = 1.0
    # D, dimension of both contrastive embedding spaces (context and motion): 512 as in the
    # authors' code (the paper gives no other value).
    embed_dim: int = 512
    # Hidden width of the two context MLP heads: 2048, the usual SimCLR-style 4x expansion.
    head_hidden: int = 2048
    # Width of the motion encoder-decoder transformer (paper Sec. 3.3; authors' code: 512).
    transformer_dim: int = 512
    # Transformer encoder layers over the clip tokens (authors' code: 2).
    encoder_layers: int = 2
    # Transformer decoder layers producing the future-motion tokens (authors' code: 4).
    decoder_layers: int = 4
    # Attention heads; transformer_dim must be divisible by it (512 / 8 = 64 per head).
    heads: int = 8
    # M-Network encoding motion-vector windows (the motion targets): a light 3D ResNet-10.
    mnet: str = "r3d_10"
    # I-Network encoding one I-frame (the context keys): a light 2D ResNet-10.
    inet: str = "r2d_10"
    # Ablation switch (paper Table 3): train the context-matching task.
    use_context: bool = True
    # Ablation switch (paper Table 3): train the motion-prediction task.
    use_motion: bool = True
    # How predicted motion is scored (paper Table 1 ablation): "infonce" = pointwise InfoNCE
    # against M-Network features of the MV window (the method); "mse" = regress the MV
    # values themselves (average-pooled to the prediction grid) with a squared error, no
    # M-Network.
    motion_objective: Literal["infonce", "mse"] = "infonce"
    # Dropout inside the transformer layers: PyTorch's default, the authors kept it.
    dropout: float = 0.1
    # What predicts the future motion map from the clip's map: "transformer" (the paper's
    # encoder-decoder, Sec. 3.3) or "conv" (ours: a spatially aligned per-cell predictor,
    # hidden width transformer_dim; it leaves the blind level in a CPU-length run, the
    # transformer does not -- docs/training.md).
    motion_predictor: Literal["transformer", "conv"] = "transformer"
    # Projection of the M-Network map to the motion embedding: "linear" (1x1x1 conv) or
    # "mlp_bn" (2-layer per-cell MLP with BN on the output, and BN on the predicted map:
    # the authors' released code).
    motion_head: Literal["linear", "mlp_bn"] = "linear"
    # Start every residual block of the three ResNets as the identity (last BN scale 0).
    zero_init_residual: bool = False
    # Diagnostic control, not a method: the pretext heads see zeros instead of the clip's
    # features, so their accuracies are the measured blind level of each task.
    blind: bool = False
    # Ours: three more hard negatives per sample, the future window with its vectors turned
    # by 90, 180 and 270 degrees: the same places move by the same amount, in another
    # direction, so the prediction must say which way things move, not only where.
    rotated_negatives: bool = False
    # What the pretext heads read of the V-Network's map: "shared" (the paper: the whole
    # map) or "split" (ours, two-pathway backbones *_rgbdiff only): context matching reads
    # the RGB pathway and motion prediction the frame-difference pathway, so that one
    # checkpoint keeps the scene and learns motion (docs/training.md).
    pathway_tasks: Literal["shared", "split"] = "shared"


@dataclass(frozen=True)
class LossConfig:
    # tau of both InfoNCE losses (paper Sec. 4.1: 0.1).
    temperature: float = 0.1
    # Candidates of the pointwise motion loss: "all" (paper Eq. 2: every position of every
    # video of the batch and of the K hard windows) or "same_position" (only the same cell
    # of those: position gives nothing away).  Both have the blind level 1 / (B + K).
    motion_candidates: Literal["all", "same_position"] = "all"
    # J = (1 - alpha) J_context + alpha J_motion (paper Sec. 4.1: equal weights, 0.5).
    alpha: float = 0.5
    # task=supervised_aux: loss = cross-entropy + this x pretext loss (paper Table 6: 0.2).
    supervised_aux_weight: float = 0.2
    # Under DDP the keys (I-frame embeddings, motion targets) of all ranks are negatives.
    # true: the gather passes gradients back to the rank that owns each key, so W ranks x
    # B/W clips compute exactly the gradient of one process with B clips (our choice);
    # false: other ranks' keys are constants (comode.distributed.gather_from_all_ranks,
    # MoCo-v3 style; same forward, slightly different gradient).
    gather_gradients: bool = True
