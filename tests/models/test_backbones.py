"""Backbone table of comode.models.backbones: shapes, depths, widths and parameter counts.

Shape alphabet: B batch, C channels, T time, H height, W width.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from comode.models.backbones import (
    BACKBONES,
    CHANNELS_LAST_ENV,
    BasicBlock,
    Conv2Plus1d,
    build_backbone,
    channels_last_on_cpu,
    conv2plus1d_mid_channels,
)
from comode.models.pathways import Pathways, frame_differences

# The single-pathway networks (the table of the module docstring); "<name>_diff" and
# "<name>_rgbdiff" are built from them (tested below).
SINGLE = sorted(name for name, spec in BACKBONES.items() if len(spec.pathways) == 1 and "diff" not in spec.pathways)

# The shape table of the backbones module docstring, row by row: (name, input, output).
FULL_WIDTH_SHAPES = [
    ("c3d", (1, 3, 16, 112, 112), (1, 512, 1, 4, 4)),
    ("r3d_18", (1, 3, 16, 112, 112), (1, 512, 2, 7, 7)),
    ("r3d_26", (1, 3, 16, 112, 112), (1, 512, 2, 7, 7)),
    ("r21d_18", (1, 3, 16, 112, 112), (1, 512, 2, 7, 7)),
    ("r21d_26", (1, 3, 16, 112, 112), (1, 512, 2, 7, 7)),
    ("r2d_10", (1, 3, 112, 112), (1, 512, 4, 4)),
    ("r3d_10", (2, 2, 8, 16, 22), (2, 512, 1, 1, 2)),
    ("r3d_10", (2, 2, 8, 32, 44), (2, 512, 1, 2, 3)),
    ("r3d_10", (1, 2, 8, 112, 112), (1, 512, 1, 7, 7)),
    ("r3d_10", (1, 2, 16, 112, 112), (1, 512, 2, 7, 7)),
]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("name", "input_shape", "output_shape"), FULL_WIDTH_SHAPES)
def test_full_width_output_shapes(name, input_shape, output_shape):
    torch.manual_seed(0)
    backbone = build_backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.randn(input_shape))
    assert tuple(features.shape) == output_shape
    assert backbone.out_channels == output_shape[1]
    assert torch.isfinite(features).all()


def test_every_backbone_in_the_table_is_covered_by_a_shape_test():
    assert {row[0] for row in FULL_WIDTH_SHAPES} == set(SINGLE)
    clips = {name for name in SINGLE if BACKBONES[name].input_kind == "clip"}
    suffixes = ("_diff", "_rgbdiff", "_slowrgbdiff")
    assert set(BACKBONES) - set(SINGLE) == {name + suffix for name in clips for suffix in suffixes}


@pytest.mark.parametrize("name", SINGLE)
def test_width_multiplier_scales_channels_and_out_channels(name):
    spec = BACKBONES[name]
    backbone = build_backbone(name, width_multiplier=0.125)
    assert backbone.out_channels == 64
    shape = {"clip": (2, 3, 16, 32, 32), "frame": (2, 3, 32, 32), "motion": (2, 2, 8, 16, 22)}
    features = backbone(torch.randn(shape[spec.input_kind]))
    assert features.shape[1] == 64
    assert _params(backbone) < _params(build_backbone(name)) / 20  # ~1/64 for pure convs


def test_frame_differences_show_only_what_changes():
    clip = torch.zeros(1, 3, 4, 5, 6)
    clip[:, :, 2:, 1, 2] = 1.0  # one pixel lights up in frame 2 and stays
    clip += torch.rand(1, 3, 1, 5, 6)  # a static background: the same in every frame
    diff = frame_differences(clip)
    assert diff.shape == clip.shape
    expected = torch.zeros_like(clip)
    expected[:, :, 2, 1, 2] = 1.0  # frame 2 minus frame 1
    expected[:, :, 0] = expected[:, :, 1]  # slot 0 repeats the first difference (frame 1 - frame 0)
    torch.testing.assert_close(diff, expected)
    assert not frame_differences(torch.rand(1, 3, 1, 5, 6)).any()  # a single frame: nothing moves


@pytest.mark.parametrize("suffix", ["_diff", "_rgbdiff", "_slowrgbdiff"])
def test_pathway_networks_see_the_clip_and_its_differences(suffix):
    torch.manual_seed(0)
    net = build_backbone("r3d_18" + suffix, width_multiplier=0.125)
    for module in net.modules():  # trained-looking BatchNorm statistics: a still clip no longer maps to 0 by itself
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    net.eval()
    clip = torch.randn(2, 3, 16, 32, 32)
    static = clip[:, :, :1].expand_as(clip).contiguous()  # a clip in which nothing moves
    with torch.no_grad():
        out, still = net(clip), net(static)
        diff_net = net.nets["diff"]
        diff_part = diff_net(frame_differences(clip)) - diff_net(torch.zeros_like(clip[:1]))
        stride = BACKBONES["r3d_18" + suffix].rgb_frame_stride
        rgb_part = net.nets["rgb"](clip[:, :, ::stride]) if "rgb" in net.nets else None
    pathways = BACKBONES["r3d_18" + suffix].pathways
    assert net.out_channels == 64 * len(pathways) == out.shape[1] and tuple(out.shape[2:]) == (2, 2, 2)
    assert isinstance(net, Pathways) and list(net.nets) == list(pathways)
    # The difference pathway's map, relative to its map of a still clip, comes last.
    torch.testing.assert_close(out[:, -64:], diff_part, rtol=1e-4, atol=1e-5)
    assert still[:, -64:].abs().max() == 0  # where nothing moves it reads exactly 0 ...
    assert out[:, -64:].abs().max() > 0.1  # ... and a moving clip does not
    if rgb_part is not None:  # repeated along time to the difference pathway's T' when it saw fewer frames
        frames = out.shape[2]
        repeated = rgb_part.repeat_interleave(-(-frames // rgb_part.shape[2]), 2)[:, :, :frames]
        torch.testing.assert_close(out[:, :64], repeated)
    net.train()
    out = net(clip)  # training mode: the still clip runs in the same batch (same BN statistics)
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_slow_rgb_pathway_sees_every_fourth_frame_only():
    torch.manual_seed(0)
    net = build_backbone("r3d_18_slowrgbdiff", width_multiplier=0.125).eval()
    clip = torch.randn(1, 3, 16, 32, 32)
    between = clip.clone()
    between[:, :, 1::4] += 1.0  # frames the RGB pathway does not see (1, 5, 9, 13)
    on_stride = clip.clone()
    on_stride[:, :, 4] += 1.0  # a frame it sees
    with torch.no_grad():
        out, out_between, out_on_stride = net(clip), net(between), net(on_stride)
    torch.testing.assert_close(out_between[:, :64], out[:, :64])  # the RGB part: unchanged
    assert (out_between[:, 64:] - out[:, 64:]).abs().max() > 1e-3  # the differences see them
    assert (out_on_stride[:, :64] - out[:, :64]).abs().max() > 1e-3


def test_zero_init_residual_starts_every_block_as_the_identity():
    net = build_backbone("r3d_18", width_multiplier=0.125, zero_init_residual=True)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(torch.all(b.bn2.weight == 0) for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) for b in blocks)
    plain = build_backbone("r3d_18", width_multiplier=0.125)
    assert all(torch.all(m.bn2.weight == 1) for m in plain.modules() if isinstance(m, BasicBlock))


def test_r3d_10_survives_degenerate_motion_grids():
    # Strides never reduce a dimension below 1: kernel-3 / padding-1 convs map 1 -> 1.
    mnet = build_backbone("r3d_10", width_multiplier=0.125).eval()
    with torch.no_grad():
        assert tuple(mnet(torch.randn(1, 2, 1, 1, 1)).shape) == (1, 64, 1, 1, 1)
        assert tuple(mnet(torch.randn(1, 2, 3, 5, 7)).shape) == (1, 64, 1, 1, 1)


def test_in_channels_override():
    backbone = build_backbone("r3d_18", width_multiplier=0.125, in_channels=2)
    assert tuple(backbone(torch.randn(2, 2, 8, 32, 32)).shape) == (2, 64, 1, 2, 2)


def test_r3d_18_matches_the_reference_parameter_count():
    # torchvision's r3d_18 has 33,371,472 parameters including its 400-way fc
    # (512 * 400 + 400 = 205,200), so the same trunk without fc has 33,166,272.
    assert _params(build_backbone("r3d_18")) == 33_371_472 - 205_200


def test_r21d_mid_channels_follow_tran_et_al():
    # M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)), t = d = 3:
    # 64 -> 64: 27*64*64 / (9*64 + 3*64) = 110592 / 768 = 144 exactly;
    # 64 -> 128: 27*64*128 / (9*64 + 3*128) = 221184 / 960 = 230.4 -> 230.
    assert conv2plus1d_mid_channels(64, 64) == 144
    assert conv2plus1d_mid_channels(64, 128) == 230
    r21d = build_backbone("r21d_18")
    first_block_conv = r21d.stages[0][0].conv1
    assert isinstance(first_block_conv, Conv2Plus1d)
    assert first_block_conv[0].out_channels == 144


@pytest.mark.parametrize("depth", ["18", "26"])
def test_r21d_has_about_the_parameters_of_r3d(depth):
    # The point of the mid-channel formula: equal capacity for 3D and (2+1)D.
    r3d, r21d = _params(build_backbone(f"r3d_{depth}")), _params(build_backbone(f"r21d_{depth}"))
    assert abs(r21d - r3d) / r3d < 0.01


def _counted_layers(backbone: nn.Module) -> int:
    """Depth as ResNets count it: main-path convs ((2+1)D pair = 1) + stem + the absent fc."""
    convs = 0
    for module in backbone.modules():
        if isinstance(module, Conv2Plus1d):
            convs += 1
        elif isinstance(module, (nn.Conv2d, nn.Conv3d)) and not _inside_2plus1d(backbone, module):
            if module.kernel_size not in ((1, 1), (1, 1, 1)):  # shortcut projections
                convs += 1
    return convs + 1  # + classifier fc


def _inside_2plus1d(root: nn.Module, conv: nn.Module) -> bool:
    return any(conv in list(m.modules()) for m in root.modules() if isinstance(m, Conv2Plus1d))


@pytest.mark.parametrize(
    ("name", "depth"),
    [("r3d_18", 18), ("r3d_26", 26), ("r21d_18", 18), ("r21d_26", 26), ("r2d_10", 10), ("r3d_10", 10)],
)
def test_depth_in_the_name_counts_layers(name, depth):
    assert _counted_layers(build_backbone(name, width_multiplier=0.125)) == depth


def test_c3d_has_eight_convs_and_no_fc():
    c3d = build_backbone("c3d", width_multiplier=0.125)
    convs = [m for m in c3d.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 32, 64, 64, 64, 64]
    assert not any(isinstance(m, nn.Linear) for m in c3d.modules())


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_batchnorm_after_every_conv_and_kaiming_init(name):  # the pathway networks included
    backbone = build_backbone(name, width_multiplier=0.125)
    convs = [m for m in backbone.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    norms = [m for m in backbone.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    assert len(norms) == len(convs)
    assert all(c.bias is None for c in convs)  # BN follows: a conv bias would be redundant
    assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)
    big = max(convs, key=lambda c: c.weight.numel())
    fan_out = big.weight.shape[0] * big.weight[0, 0].numel()
    assert big.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.2)


def test_gradients_reach_every_parameter():
    backbone = build_backbone("r21d_18", width_multiplier=0.125)
    backbone(torch.randn(2, 3, 8, 32, 32)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())


def test_unknown_name_and_bad_width_are_rejected():
    with pytest.raises(KeyError, match="r3d_26"):
        build_backbone("resnet50")
    with pytest.raises(ValueError):
        build_backbone("r3d_18", width_multiplier=0.0)


@pytest.mark.parametrize("name", ["r3d_18", "c3d"])
def test_cpu_channels_last_gives_the_same_features_and_can_be_switched_off(name, monkeypatch):
    torch.manual_seed(0)
    net = build_backbone(name, width_multiplier=0.125).eval()
    clip = torch.randn(2, 3, 16, 64, 64)
    assert channels_last_on_cpu(clip).is_contiguous(memory_format=torch.channels_last_3d)
    image = torch.randn(2, 3, 64, 64)
    assert channels_last_on_cpu(image) is image  # 4-D (I-frames): left alone
    with torch.no_grad():
        fast = net(clip)
        monkeypatch.setenv(CHANNELS_LAST_ENV, "0")
        plain = net(clip)
    assert fast.is_contiguous(memory_format=torch.channels_last_3d) and plain.is_contiguous()
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
