"""The heads of CoMoDe: the MLP projections of both tasks and the two motion predictors
(the paper's transformer and our spatially aligned conv predictor), and the rotated MV
windows used as hard negatives.  :mod:`comode.models.model` wires them.

Shape alphabet: B batch, C channels, T time, H height, W width, D embedding dim,
L sequence length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "REFERENCE_GRID",
    "MLPHead",
    "PointwiseMLP",
    "LearnedPositionalGrid",
    "MotionPredictor",
    "ConvMotionPredictor",
    "NormalisedPredictor",
    "rotate_vectors",
]

# Token grid of the V-Network map for a 16x112x112 clip (R-nets), used as the reference
# size of the learned positional tables; other grids interpolate from it.
REFERENCE_GRID = (2, 7, 7)


class MLPHead(nn.Sequential):
    """Two-layer projection head (SimCLR-style): Linear -> BN -> ReLU -> Linear.

    (B, C) -> (B, D).  Separate heads let the two tasks shape their own embedding spaces
    while sharing the backbone ("shared video backbone and separate MLP heads", abstract).
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__(
            nn.Linear(in_features, hidden_features, bias=False),  # BN follows: bias redundant
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, out_features),
        )


class LearnedPositionalGrid(nn.Module):
    """Learned 3D positional table (1, D, T, H, W), resampled to any token grid.

    forward(grid=(T', H', W')) -> (1, T'*H'*W', D), tokens in (t, y, x) raster order.
    Trilinear interpolation lets one table serve clips and MV windows of other lengths and
    resolutions (e.g. 8 vs 16 MV frames, 16x22 vs 112x112 MV maps) without retraining.
    """

    def __init__(self, dim: int, reference_grid: tuple[int, int, int] = REFERENCE_GRID) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, dim, *reference_grid))
        nn.init.trunc_normal_(self.table, std=0.02)  # ViT/DETR-style small init

    def forward(self, grid: tuple[int, int, int]) -> Tensor:
        table = self.table
        if tuple(grid) != tuple(table.shape[2:]):
            table = nn.functional.interpolate(table, size=tuple(grid), mode="trilinear", align_corners=False)
        return table.flatten(2).transpose(1, 2)  # (1, L, D)


class MotionPredictor(nn.Module):
    """Clip feature map -> predicted future-motion feature map (the encoder-decoder).

    The V-Network map (B, C, T, H, W) is projected to ``transformer_dim`` tokens (L = T*H*W)
    plus learned positions and encoded; the decoder is queried with learned positional
    queries, one per cell of the TARGET grid (T', H', W') of the M-Network map, so its
    output has exactly the target's token count; a token-wise linear layer maps it to D.
    Output: (B, D, T', H', W').
    """

    def __init__(
        self,
        in_channels: int,
        *,
        transformer_dim: int,
        embed_dim: int,
        encoder_layers: int,
        decoder_layers: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if transformer_dim % heads:
            raise ValueError(f"transformer_dim {transformer_dim} must be divisible by heads {heads}")
        self.input_projection = nn.Conv3d(in_channels, transformer_dim, kernel_size=1)
        self.encoder_positions = LearnedPositionalGrid(transformer_dim)
        self.decoder_queries = LearnedPositionalGrid(transformer_dim)
        self.transformer = nn.Transformer(
            d_model=transformer_dim,
            nhead=heads,
            num_encoder_layers=encoder_layers,
            num_decoder_layers=decoder_layers,
            dim_feedforward=4 * transformer_dim,  # the usual 4x expansion (2048 at 512)
            dropout=dropout,
            batch_first=True,
        )
        self.output_projection = nn.Linear(transformer_dim, embed_dim)

    def forward(self, features: Tensor, target_grid: tuple[int, int, int]) -> Tensor:
        batch = features.shape[0]
        tokens = self.input_projection(features)  # (B, transformer_dim, T, H, W)
        source_grid = tuple(tokens.shape[2:])
        source = tokens.flatten(2).transpose(1, 2) + self.encoder_positions(source_grid)  # (B, L, dim)
        queries = self.decoder_queries(target_grid).expand(batch, -1, -1)  # (B, L', dim)
        decoded = self.transformer(source, queries)  # (B, L', dim); no masks: all positions visible
        predicted = self.output_projection(decoded)  # (B, L', D)
        return predicted.transpose(1, 2).reshape(batch, -1, *target_grid)  # (B, D, T', H', W')


class ConvMotionPredictor(nn.Module):
    """Clip feature map -> predicted future-motion feature map, cell by cell (a departure
    from the paper's transformer; ``motion_predictor="conv"``).

    The clip map (B, C, T, H, W) is resampled to ``time_slices`` time slices (keeping the
    order of events: where the motion is heading at the clip's end is what predicts the
    next window) and folded into channels, resampled to the target's (H', W'), and two 3x3
    convolutions (BN, ReLU) and a 1x1 convolution predict D features per target cell:
    (B, D, T', H', W') with T' = 1 (an 8-frame MV window through the M-Network's /8).

    Why: each predicted cell is computed from the clip cells around the same place, so the
    predictor starts out spatially aligned with its target; the transformer must first
    learn which source token feeds which target cell, which a CPU-length run does not get
    to (measured in docs/training.md).
    """

    def __init__(self, in_channels: int, *, hidden: int, embed_dim: int, time_slices: int = 2) -> None:
        super().__init__()
        self.time_slices = time_slices
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels * time_slices, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, embed_dim, 1),
        )

    def forward(self, features: Tensor, target_grid: tuple[int, int, int]) -> Tensor:
        frames, height, width = target_grid
        if frames != 1:
            raise ValueError(
                f"the conv motion predictor predicts one time slice (an 8-frame MV window); "
                f"the target grid has {frames}: use motion_predictor=transformer"
            )
        sliced = F.adaptive_avg_pool3d(features, (self.time_slices, height, width))  # (B, C, S, H', W')
        predicted = self.layers(sliced.flatten(1, 2))  # (B, D, H', W')
        return predicted.unsqueeze(2)  # (B, D, 1, H', W')


class PointwiseMLP(nn.Sequential):
    """Per-cell two-layer MLP with BatchNorm on its output (``motion_head="mlp_bn"``):
    1x1x1 conv -> BN -> ReLU -> 1x1x1 conv -> BN.  (B, C, T, H, W) -> (B, D, T, H, W).

    Why BN on the output: it standardises every feature dimension over the batch and the
    cells, so no dimension can collapse to a constant that every candidate shares (the
    authors' released code ends its motion heads the same way)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm3d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv3d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm3d(out_channels),
        )


class NormalisedPredictor(nn.Module):
    """A motion predictor followed by BatchNorm of its (B, D, T', H', W') output (the
    prediction side of ``motion_head="mlp_bn"``)."""

    def __init__(self, predictor: nn.Module, channels: int) -> None:
        super().__init__()
        self.predictor = predictor
        self.norm = nn.BatchNorm3d(channels)

    def forward(self, features: Tensor, target_grid: tuple[int, int, int]) -> Tensor:
        return self.norm(self.predictor(features, target_grid))


def rotate_vectors(mv: Tensor, quarter_turns: int) -> Tensor:
    """(..., 2, T, H, W) MV maps with every vector turned by ``quarter_turns`` x 90 degrees
    (on screen, y down): the same places move by the same amount, in another direction."""
    x, y = mv.select(-4, 0), mv.select(-4, 1)
    for _ in range(quarter_turns % 4):
        x, y = -y, x
    return torch.stack([x, y], dim=-4)
