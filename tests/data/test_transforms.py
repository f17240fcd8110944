"""Batched augmentations: shared crop/flip of clips and motion vectors, the flip rule for
MV x, value scaling, determinism, and the photometric pieces.

Shape alphabet: B batch, T time, H height, W width, K negative windows, gh / gw MV grid.
"""

from __future__ import annotations

import pytest
import torch

from comode.data.transforms import (
    DEFAULT_MV_GEOMETRY,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentSpec,
    UniformDraws,
    augment_batch,
    colour_jitter,
    crop_motion,
    gaussian_blur,
    random_crop_boxes,
)

H, W, GH, GW = 128, 170, 16, 22  # the store's RGB frame and MV grid
NO_PHOTOMETRIC = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def _batch(b=4, t=16, k=3, *, clip=None, mv=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clip = torch.randint(0, 256, (b, 3, t, H, W), dtype=torch.uint8, generator=generator) if clip is None else clip
    mv = torch.randn(b, 1 + k, 2, 8, GH, GW, generator=generator) if mv is None else mv
    return {
        "clip": clip,
        "iframe": clip[:, :, 0].clone(),
        "mv_future": mv[:, 0],
        "mv_negatives": mv[:, 1:],
        "mv_geometry": torch.tensor(DEFAULT_MV_GEOMETRY).expand(b, 4),
    }


def _unnormalize(x, channel_dim=1):
    shape = [1] * x.ndim
    shape[channel_dim] = 3
    return x * torch.tensor(IMAGENET_STD).view(shape) + torch.tensor(IMAGENET_MEAN).view(shape)


def _ones_motion(b=1):
    return torch.ones(b, 1, 2, 8, GH, GW)


def test_shapes_and_dtypes():
    out = augment_batch(_batch(), generator=torch.Generator().manual_seed(0), train=True)
    assert out["clip"].shape == (4, 3, 16, 112, 112) and out["clip"].dtype == torch.float32
    assert out["iframe"].shape == (4, 3, 112, 112)
    assert out["mv_future"].shape == (4, 2, 8, 56, 56)  # mv_size defaults to size // 2
    assert out["mv_negatives"].shape == (4, 3, 2, 8, 56, 56)
    out = augment_batch(_batch(), generator=torch.Generator(), train=True, spec=AugmentSpec(size=64, mv_size=28))
    assert out["clip"].shape[-2:] == (64, 64) and out["mv_future"].shape[-2:] == (28, 28)


def test_size_travels_with_the_batch():
    batch = {**_batch(b=2), "size": torch.tensor([64, 64]), "mv_size": torch.tensor([16, 16])}
    out = augment_batch(batch, generator=torch.Generator(), train=False)
    assert out["clip"].shape[-2:] == (64, 64) and out["mv_negatives"].shape[-2:] == (16, 16)


def test_flip_negates_mv_x_and_keeps_y():
    # A 56 x 56 RGB-px box: output pixels per MV-frame pixel = 0.5 * 112 / 56 = 1, so a
    # field of +1 stays +1 in magnitude; the flip must turn x into -1 and leave y at +1.
    box = torch.tensor([[0.0, 0.0, 56.0, 56.0]])
    geometry = torch.tensor([DEFAULT_MV_GEOMETRY])
    kept = crop_motion(_ones_motion(), box, flip=torch.tensor([False]), geometry=geometry, size=112, mv_size=28)
    flipped = crop_motion(_ones_motion(), box, flip=torch.tensor([True]), geometry=geometry, size=112, mv_size=28)
    torch.testing.assert_close(kept, torch.ones_like(kept))
    torch.testing.assert_close(flipped[:, :, 0], -torch.ones_like(flipped[:, :, 0]))
    torch.testing.assert_close(flipped[:, :, 1], torch.ones_like(flipped[:, :, 1]))


def test_flip_moves_left_half_motion_to_the_right_half():
    motion = torch.zeros(1, 1, 2, 8, GH, GW)
    motion[:, :, 0, :, :, : GW // 2] = 4.0  # x motion only in the left half of the grid
    whole = torch.tensor([[0.0, 0.0, H, GW * 8.0]])  # the whole grid (176 RGB px wide)
    geometry = torch.tensor([DEFAULT_MV_GEOMETRY])
    out = crop_motion(motion, whole, flip=torch.tensor([True]), geometry=geometry, size=GW * 8, mv_size=GW)
    out = out[0, 0, 0, 0]  # (mv, mv): x component of the first frame
    left, right = out[:, : GW // 2 - 1], out[:, GW // 2 + 1 :]
    assert torch.all(left == 0) and torch.all(right < 0)
    torch.testing.assert_close(right, torch.full_like(right, -4.0 * 0.5))  # 0.5 RGB px per MV px, no zoom


def test_clip_and_motion_share_crop_box_and_flip():
    """Content that encodes position: the clip's pixels hold their x / y coordinate and the
    motion maps hold the RGB-px position of their cell; after augmentation the maps must
    show the positions the clip shows, scaled by output px per MV px (negated if flipped)."""
    b = 16
    xs = (torch.arange(W) + 0.5) / W  # pixel centres, as fractions of the width
    ys = (torch.arange(H) + 0.5) / H
    clip = torch.zeros(b, 3, 2, H, W)
    clip[:, 0] = xs.view(1, 1, 1, W)
    clip[:, 1] = ys.view(1, 1, H, 1)
    cell_h, cell_w, px_h, px_w = DEFAULT_MV_GEOMETRY
    mv = torch.zeros(b, 4, 2, 8, GH, GW)
    mv[:, :, 0] = ((torch.arange(GW) + 0.5) * cell_w).view(1, 1, 1, 1, GW)  # RGB px of the cell centre
    mv[:, :, 1] = ((torch.arange(GH) + 0.5) * cell_h).view(1, 1, 1, GH, 1)
    spec = AugmentSpec(size=64, mv_size=32, flip_p=0.5, **NO_PHOTOMETRIC)
    out = augment_batch(_batch(b=b, t=2, clip=clip, mv=mv), generator=torch.Generator().manual_seed(3), spec=spec)
    seen = _unnormalize(out["clip"])[:, :, 0]  # (B, 3, 64, 64) first frame
    x_px, y_px = seen[:, 0] * W, seen[:, 1] * H  # RGB px shown at each output pixel
    # Each MV output pixel covers 2 x 2 clip output pixels (64 -> 32): their mean position.
    x_at_mv = x_px.unflatten(1, (32, 2)).unflatten(3, (32, 2)).mean(dim=(2, 4))
    y_at_mv = y_px.unflatten(1, (32, 2)).unflatten(3, (32, 2)).mean(dim=(2, 4))
    flips = 0
    for i in range(b):
        # Output px per RGB px along x (signed: negative when flipped), from the clip itself.
        slope_x = (x_px[i, :, -1] - x_px[i, :, 0]).mean() / 63
        slope_y = (y_px[i, -1, :] - y_px[i, 0, :]).mean() / 63
        flips += int(slope_x < 0)
        interior = (x_at_mv[i] > cell_w) & (x_at_mv[i] < W - cell_w) & (y_at_mv[i] > cell_h) & (y_at_mv[i] < H - cell_h)
        assert interior.sum() > 100
        # Maps hold position * (output px per MV-frame px) = position * px / slope.
        for window in out["mv_negatives"][i].unbind(0):
            x_seen = window[0, 0] * slope_x / px_w
            y_seen = window[1, 0] * slope_y / px_h
            torch.testing.assert_close(x_seen[interior], x_at_mv[i][interior], atol=0.05, rtol=0.0)
            torch.testing.assert_close(y_seen[interior], y_at_mv[i][interior], atol=0.05, rtol=0.0)
    assert 0 < flips < b  # both cases exercised


def test_iframe_gets_its_own_crop():
    b = 16
    clip = torch.zeros(b, 3, 1, H, W)
    clip[:, 0] = ((torch.arange(W) + 0.5) / W).view(1, 1, 1, W)
    batch = _batch(b=b, t=1, clip=clip)
    batch["iframe"] = clip[:, :, 0].clone()
    out = augment_batch(batch, generator=torch.Generator().manual_seed(0), spec=AugmentSpec(**NO_PHOTOMETRIC))
    same = torch.isclose(out["clip"][:, :, 0], out["iframe"], atol=1e-4).flatten(1).all(dim=1)
    assert not same.any()


def test_values_scale_with_the_zoom():
    # Half-width box = 2x zoom compared with a full-width box: motion doubles.
    motion = torch.ones(2, 1, 2, 8, GH, GW)
    boxes = torch.tensor([[0.0, 0.0, 128.0, 160.0], [0.0, 0.0, 64.0, 80.0]])
    geometry = torch.tensor(DEFAULT_MV_GEOMETRY).expand(2, 4)
    out = crop_motion(motion, boxes, flip=torch.tensor([False, False]), geometry=geometry, size=112, mv_size=14)
    torch.testing.assert_close(out[1] / out[0], torch.full_like(out[0], 2.0))
    torch.testing.assert_close(out[0, :, 0], torch.full_like(out[0, :, 0], 0.5 * 112 / 160))


def test_eval_is_a_deterministic_centre_crop():
    batch = _batch(b=2)
    a = augment_batch(batch, generator=torch.Generator().manual_seed(0), train=False)
    b = augment_batch(batch, generator=torch.Generator().manual_seed(1), train=False)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    expected = batch["clip"][:, :, :, 8:120, 29:141].float() / 255  # 112 x 112 centre of 128 x 170
    torch.testing.assert_close(_unnormalize(a["clip"]), expected, atol=1e-4, rtol=0)


def test_same_generator_same_output_and_different_seeds_differ():
    batch = _batch(b=3)
    a = augment_batch(batch, generator=torch.Generator().manual_seed(5), train=True)
    b = augment_batch(batch, generator=torch.Generator().manual_seed(5), train=True)
    c = augment_batch(batch, generator=torch.Generator().manual_seed(6), train=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not torch.allclose(a["clip"], c["clip"])


def test_crop_boxes_respect_area_and_aspect_limits():
    boxes = random_crop_boxes(
        4000, H, W, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), draw=UniformDraws(torch.Generator(), torch.device("cpu"))
    )
    y0, x0, h, w = boxes.unbind(1)
    assert torch.all(y0 >= 0) and torch.all(x0 >= 0) and torch.all(y0 + h <= H) and torch.all(x0 + w <= W)
    area = h * w / (H * W)
    assert area.min() > 0.18 and area.max() <= 1.0
    aspect = w / h
    assert aspect.min() > 0.7 and aspect.max() < 1.4
    assert area.std() > 0.1  # really random


def test_colour_jitter_pieces():
    draws = UniformDraws(torch.Generator().manual_seed(0), torch.device("cpu"))
    video = torch.rand(64, 3, 2, 8, 8)
    grey = colour_jitter(video, spec=AugmentSpec(jitter_p=0.0, grayscale_p=1.0), draw=draws)
    torch.testing.assert_close(grey[:, 0], grey[:, 1])
    torch.testing.assert_close(grey[:, 1], grey[:, 2])
    same = colour_jitter(video, spec=AugmentSpec(jitter_p=0.0, grayscale_p=0.0), draw=draws)
    torch.testing.assert_close(same, video)
    # Hue and saturation keep a grey image grey; brightness scales it.
    flat = torch.full((64, 3, 1, 4, 4), 0.5)
    jittered = colour_jitter(flat, spec=AugmentSpec(jitter_p=1.0, contrast=0.0, grayscale_p=0.0), draw=draws)
    torch.testing.assert_close(jittered[:, 0], jittered[:, 2], atol=1e-5, rtol=0)
    assert jittered.std() > 0.05 and jittered.min() >= 0 and jittered.max() <= 1


def test_gaussian_blur():
    video = torch.rand(2, 3, 2, 32, 32)
    torch.testing.assert_close(gaussian_blur(video, torch.zeros(2), max_sigma=2.0), video)
    blurred = gaussian_blur(video, torch.tensor([0.0, 2.0]), max_sigma=2.0)
    torch.testing.assert_close(blurred[0], video[0])
    assert blurred[1].std() < 0.5 * video[1].std()
    torch.testing.assert_close(blurred[1].mean(), video[1].mean(), atol=0.01, rtol=0)
    constant = torch.full((1, 3, 1, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, torch.tensor([1.5]), max_sigma=2.0), constant)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_the_gpu_like_on_the_cpu_in_eval_mode():
    batch = _batch(b=2)
    cpu = augment_batch(batch, generator=torch.Generator(), train=False)
    gpu_batch = {k: v.cuda() for k, v in batch.items()}
    gpu = augment_batch(gpu_batch, generator=torch.Generator(device="cuda").manual_seed(0), train=False)
    for key in cpu:
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], atol=1e-4, rtol=1e-4)
    train = augment_batch(gpu_batch, generator=torch.Generator(device="cuda").manual_seed(0), train=True)
    assert train["clip"].is_cuda and torch.isfinite(train["clip"]).all()
