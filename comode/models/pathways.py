"""Clip networks that look at how the picture changes: frame differences, and several
pathways side by side (a departure from the paper, whose V-Network sees RGB only; why:
docs/training.md).  Every RGB clip backbone of :data:`comode.models.backbones.BACKBONES`
gets three variants (registered by :func:`comode.models.backbones.add_pathway_variants`): ``<name>_diff`` (the same
network on frame differences), ``<name>_rgbdiff`` (an RGB and a difference pathway, their
maps concatenated) and ``<name>_slowrgbdiff`` (the same, with the RGB pathway on every
4th clip frame only).

Shape alphabet: B batch, C channels, T time, H height, W width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PATHWAY_SUFFIXES", "RGB_FRAME_STRIDE", "SLOW_RGB_STRIDE", "frame_differences", "Pathways"]

PATHWAY_SUFFIXES = {"_diff": ("diff",), "_rgbdiff": ("rgb", "diff"), "_slowrgbdiff": ("rgb", "diff")}
# The RGB pathway of ``*_slowrgbdiff`` sees every SLOW_RGB_STRIDE-th clip frame (SlowFast's
# alpha, Feichtenhofer et al. 2019): appearance changes slowly, so a quarter of the frames
# keep the scene at a quarter of the pathway's compute; motion is the difference
# pathway's, which sees every frame.
SLOW_RGB_STRIDE = 4
# Which clip frames the RGB pathway of each variant sees (every n-th).
RGB_FRAME_STRIDE = {"_diff": 1, "_rgbdiff": 1, "_slowrgbdiff": SLOW_RGB_STRIDE}


def frame_differences(clip: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B, C, T, H, W): frame t minus frame t-1 of the clip (the clip's
    own frames, so at stride s the motion over s video frames); the first slot repeats the
    first difference so that T, and with it the map's grid, stays that of the clip.
    Static pixels become 0: what is left is where, and how fast, the picture changes."""
    if clip.shape[2] < 2:
        return torch.zeros_like(clip)
    differences = clip[:, :, 1:] - clip[:, :, :-1]
    return torch.cat([differences[:, :, :1], differences], dim=2)


class Pathways(nn.Module):
    """A clip network made of one network per pathway, run on the same RGB clip.

    forward: (B, 3, T, H, W) normalised RGB clip -> (B, sum C_p, T', H', W'): the maps of
    the pathways concatenated along channels, in the order of ``pathways`` ("rgb": the
    clip itself, "diff": :func:`frame_differences` of it).  Every pathway is the same
    architecture, so their grids agree.  ``pathway_channels`` gives each pathway's C.

    The difference pathway reports its map relative to its map of a still clip (one
    all-zero clip run in the same batch): where nothing moves it then reads exactly 0.
    Why: a still region's response is the same constant everywhere, so without this a
    video's pooled feature is mostly that constant, weighted by how much of the frame is
    still -- two videos with the same motion but a different number or size of moving
    objects look different to a cosine, and two still-dominated videos look alike.
    Measured on constant-velocity patches (benchmarks/heldout_patches.py): motion R@1 of a
    pretrained network 29.5 -> 46.2; on the sample set 37.5 -> 38.3 (docs/training.md).
    A random init (zero-bias convolutions, identity BN) already maps a still clip to 0.

    With ``rgb_frame_stride`` n > 1 the RGB pathway sees frames 0, n, 2n, ... of the clip,
    and its map is repeated along time to the difference pathway's T' (nearest), so that
    the maps still concatenate; its pooled feature is the same as without the repeat.
    """

    def __init__(self, pathways: dict[str, nn.Module], *, rgb_frame_stride: int = 1) -> None:
        super().__init__()
        unknown = sorted(set(pathways) - {"rgb", "diff"})
        if unknown or not pathways:
            raise ValueError(f"pathways must be among rgb, diff; got {sorted(pathways)}")
        if rgb_frame_stride < 1:
            raise ValueError(f"rgb_frame_stride must be >= 1, got {rgb_frame_stride}")
        self.nets = nn.ModuleDict(pathways)
        self.rgb_frame_stride = rgb_frame_stride
        self.pathway_channels = {name: net.out_channels for name, net in self.nets.items()}
        self.out_channels = sum(self.pathway_channels.values())

    def forward(self, clip: Tensor) -> Tensor:
        maps = [
            net(clip[:, :, :: self.rgb_frame_stride])
            if name == "rgb"
            else self._relative_to_still(net, frame_differences(clip))
            for name, net in self.nets.items()
        ]
        if len(maps) == 1:
            return maps[0]
        frames = max(m.shape[2] for m in maps)
        maps = [
            m if m.shape[2] == frames else m.repeat_interleave(_ceil_div(frames, m.shape[2]), 2)[:, :, :frames]
            for m in maps
        ]
        return torch.cat(maps, dim=1)

    @staticmethod
    def _relative_to_still(net: nn.Module, differences: Tensor) -> Tensor:
        """net(differences) minus net(a still clip), the still clip in the same batch (so
        that BatchNorm treats both alike, in training and in evaluation)."""
        still = differences.new_zeros((1, *differences.shape[1:]))
        out = net(torch.cat([differences, still]))
        return out[:-1] - out[-1:]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
