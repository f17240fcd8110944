"""Backbones of CoMoDe: the V-Network (video clips), I-Network (I-frames) and M-Network (motion vectors).

Huang et al., "Self-supervised Video Representation Learning by Context and Motion
Decoupling", CVPR 2021 (arXiv 2104.00862): the V-Network is the network being
pretrained (C3D, R3D-26 or R(2+1)D-26 in the paper); the I-Network encodes one key frame for
context matching and the M-Network encodes a motion-vector window for motion prediction.
Both auxiliary networks exist only during pretraining.

Shape alphabet: B batch, C channels, T time, H height, W width.

Every backbone returns its last feature map, NOT globally pooled, because the
motion-prediction head turns the V-Network map into T'*H'*W' tokens and compares the
M-Network map point by point.  ``out_channels`` is the C of that map.

Measured output shapes (full width; ``tests/models/test_backbones.py`` checks every row):

=========  ======================  =========================  ===============================
name       role                    input                      output
=========  ======================  =========================  ===============================
c3d        V-Network               (B, 3, 16, 112, 112)       (B, 512, 1, 4, 4)
r3d_18     V-Network               (B, 3, 16, 112, 112)       (B, 512, 2, 7, 7)
r3d_26     V-Network               (B, 3, 16, 112, 112)       (B, 512, 2, 7, 7)
r21d_18    V-Network               (B, 3, 16, 112, 112)       (B, 512, 2, 7, 7)
r21d_26    V-Network               (B, 3, 16, 112, 112)       (B, 512, 2, 7, 7)
r2d_10     I-Network               (B, 3, 112, 112)           (B, 512, 4, 4)
r3d_10     M-Network               (B, 2, 8, 16, 22)          (B, 512, 1, 1, 2)
r3d_10     M-Network               (B, 2, 8, 32, 44)          (B, 512, 1, 2, 3)
r3d_10     M-Network               (B, 2, 8, 112, 112)        (B, 512, 1, 7, 7)
r3d_10     M-Network               (B, 2, 16, 112, 112)       (B, 512, 2, 7, 7)
=========  ======================  =========================  ===============================

Downsampling of the ResNets (kernel-3 / padding-1 convolutions, so a stride-2 step maps
size n to ceil(n / 2) and never below 1 -- tiny motion-vector grids cannot crash):

* 3D and (2+1)D: stem stride (1, 2, 2); stage conv2_x stride 1; conv3_x, conv4_x and
  conv5_x stride 2 in T, H and W.  Total: T / 8, H / 16, W / 16 (rounded up per step).
* 2D: stem 7x7 stride 2 + 3x3 max pool stride 2, then stages with stride 1, 2, 2, 2:
  H / 32, W / 32 (rounded up per step; 112 -> 4).

Depth names count weighted layers the way ResNet-18/34 do: stem conv + 2 convs per basic
block + the classifier fc that a supervised network would put on top (absent here, we stop
at the feature map).  So [1,1,1,1] blocks = 1 + 8 + 1 = 10, [2,2,2,2] = 1 + 16 + 1 = 18 and
[2,3,4,3] = 1 + 24 + 1 = 26, the R3D-26 / R(2+1)D-26 of the paper.  A (2+1)D conv (spatial
1xdxd followed by temporal tx1x1) counts as ONE layer, as in Tran et al. 2018; 1x1 shortcut
projections are not counted.

``width_multiplier`` scales every channel count (stem, stages, (2+1)D mid channels), e.g.
0.125 gives 64-channel outputs for fast CPU tests and demos.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from comode.models.pathways import PATHWAY_SUFFIXES, RGB_FRAME_STRIDE, Pathways

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "build_backbone",
    "channels_last_on_cpu",
    "CHANNELS_LAST_ENV",
    "C3D",
    "ResNet",
    "BasicBlock",
    "Conv2Plus1d",
    "conv2plus1d_mid_channels",
    "scale_channels",
]

ConvKind = Literal["2d", "3d", "2plus1d"]
InputKind = Literal["clip", "frame", "motion"]

# Channels of the four ResNet stages and of C3D's conv blocks at width_multiplier = 1.
RESNET_STAGE_CHANNELS = (64, 128, 256, 512)
C3D_CHANNELS = (64, 128, 256, 512, 512)
# Tran et al.'s released R(2+1)D code (VMZ, also torchvision) uses 45 mid channels in the
# (2+1)D stem instead of the parameter-matching formula (which would give 83 for 3 -> 64).
R21D_STEM_MID_CHANNELS = 45


@dataclass(frozen=True)
class BackboneSpec:
    """One row of the backbone table.

    Attributes:
        family: "c3d" or "resnet".
        conv: for ResNets, the convolution type: "2d" (frames), "3d", or "2plus1d".
        blocks_per_stage: basic blocks in each of the 4 ResNet stages (empty for C3D).
        input_kind: what the network eats: "clip" (B, 3, T, H, W), "frame" (B, 3, H, W),
            "motion" (B, 2, T, H, W) motion-vector maps (x, y components).
        in_channels: default number of input channels.
        description: one line for humans (CLI listings, docs).
    """

    family: Literal["c3d", "resnet"]
    conv: ConvKind
    blocks_per_stage: tuple[int, ...]
    input_kind: InputKind
    in_channels: int
    description: str
    # What a clip network looks at (see :class:`comode.models.pathways.Pathways`): ("rgb",) the frames themselves
    # (the paper), ("diff",) the differences of consecutive clip frames, ("rgb", "diff") one
    # network of each kind side by side, their maps concatenated.
    pathways: tuple[str, ...] = ("rgb",)
    # Beside a difference pathway: the RGB pathway sees every n-th clip frame only (1: all).
    rgb_frame_stride: int = 1


def _resnet(conv: ConvKind, blocks_per_stage: tuple[int, ...], input_kind: InputKind, description: str) -> BackboneSpec:
    """A ResNet row of the table; motion-vector maps have 2 input channels (x, y), pictures 3."""
    in_channels = 2 if input_kind == "motion" else 3
    return BackboneSpec("resnet", conv, blocks_per_stage, input_kind, in_channels, description)


def add_pathway_variants(table: dict[str, BackboneSpec]) -> None:
    """Register ``<clip backbone>_diff`` and ``<clip backbone>_rgbdiff`` for every RGB clip
    backbone: the same network on frame differences, and both side by side (:class:`comode.models.pathways.Pathways`).

    Why these exist (a departure from the paper, whose V-Network sees RGB only): at CPU
    scale an RGB network does not learn to predict motion within the run -- it keys on
    appearance, and the paper itself needs ~10 epochs of UCF101 to leave the blind level --
    while the same network on frame differences does within a few hundred steps; the
    two-pathway network keeps the RGB pathway for context.  Measured in docs/training.md.
    """
    for name, spec in list(table.items()):
        if spec.input_kind != "clip" or spec.pathways != ("rgb",):
            continue
        for suffix, pathways in PATHWAY_SUFFIXES.items():
            stride = RGB_FRAME_STRIDE[suffix]
            if pathways == ("diff",):
                what = "on frame differences"
            elif stride == 1:
                what = "two pathways (RGB frames, frame differences), maps concatenated"
            else:
                what = f"two pathways (RGB on every {stride}th frame, frame differences), maps concatenated"
            table[name + suffix] = dataclasses.replace(
                spec, pathways=pathways, rgb_frame_stride=stride, description=f"{spec.description}; {what}"
            )


BACKBONES: dict[str, BackboneSpec] = {
    # V-Networks: the pretrained video backbones (the paper reports C3D, R3D-26, R(2+1)D-26).
    "c3d": BackboneSpec(
        "c3d", "3d", (), "clip", 3, "C3D with BN (VCOP-style): 3x3x3 convs 64-128-256x2-512x2-512x2, no fc"
    ),
    "r3d_18": _resnet("3d", (2, 2, 2, 2), "clip", "3D ResNet-18: [2,2,2,2] basic blocks"),
    "r3d_26": _resnet("3d", (2, 3, 4, 3), "clip", "3D ResNet-26: [2,3,4,3] basic blocks"),
    "r21d_18": _resnet("2plus1d", (2, 2, 2, 2), "clip", "R(2+1)D-18: [2,2,2,2] basic blocks"),
    "r21d_26": _resnet("2plus1d", (2, 3, 4, 3), "clip", "R(2+1)D-26: [2,3,4,3] basic blocks"),
    # I-Network: one decoded I-frame (key frame) -> context features.
    "r2d_10": _resnet("2d", (1, 1, 1, 1), "frame", "2D ResNet-10 on a single I-frame (I-Network)"),
    # M-Network: a window of motion-vector maps (x, y) -> motion features.
    "r3d_10": _resnet("3d", (1, 1, 1, 1), "motion", "3D ResNet-10 on motion-vector maps (M-Network)"),
}


add_pathway_variants(BACKBONES)


def scale_channels(channels: int, width_multiplier: float) -> int:
    """Channel count after applying ``width_multiplier`` (rounded, at least 1)."""
    return max(1, int(round(channels * width_multiplier)))


def conv2plus1d_mid_channels(in_channels: int, out_channels: int, t: int = 3, d: int = 3) -> int:
    """Mid channels M of a (2+1)D conv replacing a t x d x d conv (Tran et al. 2018, Sec. 3.5).

    M = floor(t * d^2 * N_in * N_out / (d^2 * N_in + t * N_out)) makes the spatial (1xdxd)
    plus temporal (tx1x1) pair have the same parameter count as the full 3D conv it replaces,
    so R(2+1)D and R3D of the same depth are compared at equal capacity.
    """
    return (t * d * d * in_channels * out_channels) // (d * d * in_channels + t * out_channels)


# --------------------------------------------------------------------------------------
# Convolution "kinds": the only thing that differs between R2D, R3D and R(2+1)D.
# ResNet/BasicBlock below are written once against this small interface.
# --------------------------------------------------------------------------------------


class Conv2Plus1d(nn.Sequential):
    """(2+1)D conv: spatial 1 x k x k conv -> BN -> ReLU -> temporal k x 1 x 1 conv.

    (B, C_in, T, H, W) -> (B, C_out, T / stride_t, H / stride_s, W / stride_s).  The caller
    applies the BN + ReLU that follow the factorised conv as a whole.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        *,
        kernel: tuple[int, int] = (3, 3),
        stride: tuple[int, int] = (1, 1),
    ) -> None:
        k_t, k_s = kernel
        s_t, s_s = stride
        super().__init__(
            nn.Conv3d(in_channels, mid_channels, (1, k_s, k_s), (1, s_s, s_s), (0, k_s // 2, k_s // 2), bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, (k_t, 1, 1), (s_t, 1, 1), (k_t // 2, 0, 0), bias=False),
        )


class _ConvOps:
    """Builds the layers of a ResNet for one convolution kind (2D, 3D or (2+1)D)."""

    def __init__(self, kind: ConvKind, width_multiplier: float) -> None:
        self.kind = kind
        self.width_multiplier = width_multiplier
        self.is_2d = kind == "2d"

    def norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if self.is_2d else nn.BatchNorm3d(channels)

    def stride(self, step: int) -> tuple[int, ...]:
        """Stride tuple that subsamples every axis (T, H, W or H, W) by ``step``."""
        return (step,) * (2 if self.is_2d else 3)

    def conv3(self, in_channels: int, out_channels: int, step: int) -> nn.Module:
        """The 3x3(x3) conv of a basic block, subsampling every axis by ``step``."""
        if self.kind == "2plus1d":
            mid = conv2plus1d_mid_channels(in_channels, out_channels)
            return Conv2Plus1d(in_channels, out_channels, mid, stride=(step, step))
        conv = nn.Conv2d if self.is_2d else nn.Conv3d
        return conv(in_channels, out_channels, 3, self.stride(step), 1, bias=False)

    def projection(self, in_channels: int, out_channels: int, step: int) -> nn.Module:
        """1x1(x1) conv + BN shortcut for blocks that change channels or resolution."""
        conv = nn.Conv2d if self.is_2d else nn.Conv3d
        return nn.Sequential(conv(in_channels, out_channels, 1, self.stride(step), bias=False), self.norm(out_channels))

    def stem(self, in_channels: int, out_channels: int) -> nn.Sequential:
        """Stem: H and W / 2 (and / 4 for 2D, which adds the classic max pool); T unchanged.

        Kept temporally full-resolution so a 16-frame clip reaches conv5_x with T' = 2.
        """
        relu = nn.ReLU(inplace=True)
        if self.kind == "2d":
            return nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 7, 2, 3, bias=False),
                self.norm(out_channels),
                relu,
                nn.MaxPool2d(3, 2, 1),
            )
        if self.kind == "3d":
            return nn.Sequential(
                nn.Conv3d(in_channels, out_channels, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                self.norm(out_channels),
                relu,
            )
        mid = scale_channels(R21D_STEM_MID_CHANNELS, self.width_multiplier)
        return nn.Sequential(
            Conv2Plus1d(in_channels, out_channels, mid, kernel=(3, 7), stride=(1, 2)), self.norm(out_channels), relu
        )


class BasicBlock(nn.Module):
    """ResNet basic block: conv3 -> BN -> ReLU -> conv3 -> BN, plus shortcut, then ReLU.

    (B, C_in, [T,] H, W) -> (B, C_out, [T / step,] H / step, W / step).
    """

    def __init__(self, ops: _ConvOps, in_channels: int, out_channels: int, step: int) -> None:
        super().__init__()
        self.conv1 = ops.conv3(in_channels, out_channels, step)
        self.bn1 = ops.norm(out_channels)
        self.conv2 = ops.conv3(out_channels, out_channels, 1)
        self.bn2 = ops.norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        needs_projection = step != 1 or in_channels != out_channels
        self.shortcut = ops.projection(in_channels, out_channels, step) if needs_projection else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet feature extractor (no pooling, no fc) shared by R2D, R3D and R(2+1)D.

    (B, C_in, T, H, W) -> (B, C, T', H', W') for 3D kinds; (B, C_in, H, W) -> (B, C, H', W')
    for 2D.  See the module docstring for the strides.
    """

    def __init__(
        self,
        conv: ConvKind,
        blocks_per_stage: tuple[int, ...],
        *,
        in_channels: int,
        width_multiplier: float = 1.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        ops = _ConvOps(conv, width_multiplier)
        widths = [scale_channels(c, width_multiplier) for c in RESNET_STAGE_CHANNELS]
        self.stem = ops.stem(in_channels, widths[0])
        stages = []
        channels = widths[0]
        for index, (width, blocks) in enumerate(zip(widths, blocks_per_stage)):
            step = 1 if index == 0 else 2  # conv2_x keeps resolution; conv3_x..conv5_x halve it
            stage = [BasicBlock(ops, channels, width, step)]
            stage += [BasicBlock(ops, width, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels
        _init_weights(self)
        if zero_init_residual:
            for block in self.modules():
                if isinstance(block, BasicBlock):
                    nn.init.zeros_(block.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(channels_last_on_cpu(x)))


class C3D(nn.Module):
    """C3D with BatchNorm as used by VCOP (Xu et al. 2019) and later self-supervised work.

    Conv blocks (3x3x3, padding 1, BN, ReLU): 64 | 128 | 256, 256 | 512, 512 | 512, 512,
    each group followed by a max pool: pool1 (1, 2, 2) keeps early temporal detail, pools
    2-4 are (2, 2, 2), pool5 is (2, 2, 2) with spatial padding 1 (7 -> 4).  The fc layers of
    the original C3D are dropped.  (B, 3, 16, 112, 112) -> (B, 512, 1, 4, 4).
    """

    def __init__(self, *, in_channels: int = 3, width_multiplier: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (scale_channels(c, width_multiplier) for c in C3D_CHANNELS)
        pool = nn.MaxPool3d
        self.features = nn.Sequential(
            _conv_bn_relu3d(in_channels, c1),
            pool((1, 2, 2), (1, 2, 2)),
            _conv_bn_relu3d(c1, c2),
            pool(2, 2),
            _conv_bn_relu3d(c2, c3),
            _conv_bn_relu3d(c3, c3),
            pool(2, 2),
            _conv_bn_relu3d(c3, c4),
            _conv_bn_relu3d(c4, c4),
            pool(2, 2),
            _conv_bn_relu3d(c4, c5),
            _conv_bn_relu3d(c5, c5),
            pool(2, 2, padding=(0, 1, 1)),
        )
        self.out_channels = c5
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(channels_last_on_cpu(x))


CHANNELS_LAST_ENV = "COMODE_CPU_CHANNELS_LAST"


def channels_last_on_cpu(x: Tensor) -> Tensor:
    """A 5-D CPU input (B, C, T, H, W) in channels-last-3d memory; anything else unchanged.

    Why: oneDNN's 3-D convolutions run faster on it, and the layout carries through the
    network: faster forward + backward for r3d_26, c3d and the M-Network on 2 CPU cores,
    r21d_26 unchanged (figures: docs/performance.md).  GPU inputs are left alone: not
    measured there.
    Values are the same up to float32 summation order, but that order then depends on the
    batch size, so two ranks of half a batch drift from one process faster (2.5e-3 vs
    5.7e-5 in gradient norm after 2 steps).  ``COMODE_CPU_CHANNELS_LAST=0`` keeps the default
    layout (the distributed equivalence test sets it).
    """
    if x.dim() == 5 and x.device.type == "cpu" and os.environ.get(CHANNELS_LAST_ENV, "1") != "0":
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _conv_bn_relu3d(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


def _init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) convs and unit-scale BN, as in torchvision's ResNets."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_backbone(
    name: str, *, width_multiplier: float = 1.0, in_channels: int | None = None, zero_init_residual: bool = False
) -> nn.Module:
    """Build the backbone ``name`` from :data:`BACKBONES`.

    Args:
        name: a key of :data:`BACKBONES`.
        width_multiplier: scales every channel count (> 0); ``out_channels`` reflects it.
        in_channels: input channels; defaults to the table's (3 for RGB, 2 for motion vectors).

        zero_init_residual: start every residual block as the identity (the last BN of
            its residual branch at scale 0, Goyal et al. 2017); ResNets only.

    Returns:
        An ``nn.Module`` mapping (B, C_in, T, H, W) -- or (B, C_in, H, W) for 2D -- to an
        unpooled feature map, with an ``out_channels`` attribute.  Clip backbones with
        several pathways (``*_rgbdiff``) are a :class:`comode.models.pathways.Pathways` module.
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    if not (width_multiplier > 0 and math.isfinite(width_multiplier)):
        raise ValueError(f"width_multiplier must be a positive number, got {width_multiplier}")
    spec = BACKBONES[name]
    channels_in = spec.in_channels if in_channels is None else in_channels

    def single() -> nn.Module:
        if spec.family == "c3d":
            return C3D(in_channels=channels_in, width_multiplier=width_multiplier)
        return ResNet(
            spec.conv,
            spec.blocks_per_stage,
            in_channels=channels_in,
            width_multiplier=width_multiplier,
            zero_init_residual=zero_init_residual,
        )

    if spec.pathways == ("rgb",):
        return single()
    return Pathways({pathway: single() for pathway in spec.pathways}, rgb_frame_stride=spec.rgb_frame_stride)
