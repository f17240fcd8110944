"""Pretraining augmentations as pure functions on BATCHED tensors (GPU or CPU).

The data loader delivers raw samples (uint8 frames at the store's RGB size, motion vectors
on the store's grid); :func:`augment_batch` runs where the model runs, on the whole batch
at once, every random draw from the ``torch.Generator`` it is given.

What happens to one sample (train=True):

* **clip** (B, 3, T, H, W) uint8, H x W = the stored 128 x 170 (short side 128, the
  authors' "scale to 128" step is done once at extraction): a random resized crop
  (area 0.2..1 of the frame, aspect 3/4..4/3, torchvision's algorithm) resized to
  ``size`` x ``size`` (112), a horizontal flip (p 0.5), colour jitter (p 0.8; brightness,
  contrast, saturation 0.4, hue 0.1), grayscale (p 0.2), Gaussian blur (p 0.5, sigma
  0.1..2), ImageNet mean/std normalisation.  All 16 frames share the same crop, flip,
  colours and blur (a temporally consistent view, as in the authors' code).
* **motion vectors** of the same sample (future window and negatives): the SAME crop box
  and flip as the clip, so a motion map stays aligned with the pixels it describes.  The
  box is converted from RGB pixels to MV-grid cells (one 16-px cell of the 340x256 MV
  frame is 8 px of the 170x128 RGB frame) and the crop is resampled (bilinear) to
  ``mv_size`` x ``mv_size`` (default ``size // 2`` = 56, so the M-Network (/16) sees a
  4 x 4 grid; the crop holds ~8-16 MV cells per side, so 56 loses nothing).  A flip
  mirrors the maps AND negates the x component (motion to the right becomes motion to
  the left).  Values are converted from MV-frame pixels per frame to **clip output pixels
  per frame** (x times size / crop width in MV-frame pixels, y likewise): the motion
  the V-Network's input actually shows, so a zoomed-in crop shows larger motion.
* **I-frame** (B, 3, H, W): its own independent crop, flip, colours and blur (it is a
  different image; matching must not rely on identical crops).

train=False: the centre square of side 112/128 of the short side (112 x 112 of 128 x 170),
no resize beyond that, no flip, colour or blur; MVs cropped the same way.

Colour jitter is one per-sample affine colour map (brightness, contrast, saturation and a
YIQ hue rotation composed in that fixed order, clamped once at the end) instead of
torchvision's four clamped steps in random order: one batched einsum on the GPU.

Shape alphabet: B batch, T time, H height, W width, K negative windows, gh / gw MV grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AugmentSpec",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_MV_GEOMETRY",
    "INPUT_NORMALIZATION",
    "augment_batch",
    "random_crop_boxes",
    "centre_crop_boxes",
    "crop_resize",
    "crop_motion",
    "colour_jitter",
    "gaussian_blur",
    "normalize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601 luma, what torchvision's rgb_to_grayscale uses.
LUMA = (0.299, 0.587, 0.114)

# (cell_h, cell_w, px_h, px_w) of the default extraction: a 16-px MV cell of the 340x256 MV
# frame is 8 px of the 170x128 RGB frame, one MV-frame pixel is 0.5 RGB px.  Used when a
# batch carries no ``mv_geometry`` (the dataset always sends it).
DEFAULT_MV_GEOMETRY = (8.0, 8.0, 0.5, 0.5)

# How augment_batch maps pixels to network input (copied into exported backbones).
INPUT_NORMALIZATION = {
    "layout": "(B, 3, T, H, W) RGB, T = 16, H = W = size (data.size, 112 by default)",
    "scale": "uint8 / 255 -> [0, 1], then (x - mean) / std per channel",
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "resize": "short side 128 (stretched 340x256 frame at half size: 170x128), centre crop 112x112",
}


@dataclass(frozen=True)
class AugmentSpec:
    """Augmentation parameters (defaults: SimCLR/CVRL-style, the authors' choices)."""

    # Output side of the clip and I-frame crops (paper: 112).
    size: int = 112
    # Output side of the MV maps; None = size // 2 (see the module docstring).
    mv_size: int | None = None
    # Random resized crop: fraction of the frame's area and aspect-ratio range.
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    # Evaluation crop: centre square of this fraction of the short side (112 / 128).
    eval_crop: float = 112 / 128
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    # Hue shift as a fraction of a full turn (torchvision's convention: 0.1 = +-36 degrees).
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    @property
    def motion_size(self) -> int:
        return self.mv_size if self.mv_size is not None else max(1, self.size // 2)


def augment_batch(
    batch: Mapping[str, Tensor], *, generator: torch.Generator, train: bool = True, spec: AugmentSpec | None = None
) -> dict[str, Tensor]:
    """Augment a collated batch of raw samples (see :mod:`comode.data.dataset`).

    Args:
        batch: ``clip`` (B, 3, T, H, W) uint8 (or float in [0, 1]), ``iframe`` (B, 3, H, W),
            ``mv_future`` (B, 2, T_m, gh, gw) float MV-frame pixels per frame (x, y),
            ``mv_negatives`` (B, K, 2, T_m, gh, gw); optional ``mv_geometry`` (B, 4)
            (cell_h, cell_w, px_h, px_w in RGB pixels), ``size`` / ``mv_size`` (B,) output
            sides chosen by the dataset (used when ``spec`` is None).
        generator: every random draw comes from it (its device decides where draws happen).
        train: random augmentation; False = deterministic centre crop, nothing else.
        spec: parameters; None = defaults with the batch's ``size`` / ``mv_size``.

    Returns:
        float32 ``clip`` (B, 3, T, S, S) normalised, ``iframe`` (B, 3, S, S) normalised,
        ``mv_future`` (B, 2, T_m, S_m, S_m) and ``mv_negatives`` (B, K, 2, T_m, S_m, S_m) in
        clip-output pixels per frame; S = size, S_m = mv_size.
    """
    spec = spec if spec is not None else _spec_from_batch(batch)
    clip, iframe = batch["clip"], batch["iframe"]
    device = clip.device
    b, _, t, h, w = clip.shape
    draw = UniformDraws(generator, device)

    if train:
        clip_box = random_crop_boxes(b, h, w, scale=spec.scale, ratio=spec.ratio, draw=draw)
        clip_flip = draw.uniform(b) < spec.flip_p
        iframe_box = random_crop_boxes(b, h, w, scale=spec.scale, ratio=spec.ratio, draw=draw)
        iframe_flip = draw.uniform(b) < spec.flip_p
    else:
        clip_box = iframe_box = centre_crop_boxes(b, h, w, fraction=spec.eval_crop, device=device)
        clip_flip = iframe_flip = torch.zeros(b, dtype=torch.bool, device=device)

    out_clip = crop_resize(_as_unit_float(clip).flatten(1, 2), clip_box, size=spec.size, flip=clip_flip)
    out_clip = out_clip.unflatten(1, (3, t))  # (B, 3, T, S, S)
    out_iframe = crop_resize(_as_unit_float(iframe), iframe_box, size=spec.size, flip=iframe_flip)
    if train:
        out_clip = _photometric(out_clip, spec, draw)
        out_iframe = _photometric(out_iframe.unsqueeze(2), spec, draw).squeeze(2)

    geometry = batch.get("mv_geometry")
    if geometry is None:
        geometry = torch.tensor(DEFAULT_MV_GEOMETRY, device=device).expand(b, 4)
    windows = torch.cat([batch["mv_future"].unsqueeze(1), batch["mv_negatives"]], dim=1)  # (B, 1+K, 2, T_m, gh, gw)
    moved = crop_motion(
        windows.to(device=device, dtype=torch.float32),
        clip_box,
        flip=clip_flip,
        geometry=geometry.to(device=device, dtype=torch.float32),
        size=spec.size,
        mv_size=spec.motion_size,
    )
    return {
        "clip": normalize(out_clip, channel_dim=1),
        "iframe": normalize(out_iframe, channel_dim=1),
        "mv_future": moved[:, 0].contiguous(),
        "mv_negatives": moved[:, 1:].contiguous(),
    }


# --------------------------------------------------------------------------------------
# Random draws
# --------------------------------------------------------------------------------------


class UniformDraws:
    """Uniform draws from one generator, made on its device and moved to the data's
    (the random source every augmentation helper here takes)."""

    def __init__(self, generator: torch.Generator, device: torch.device) -> None:
        self.generator, self.device = generator, device

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        values = torch.rand(shape, generator=self.generator, device=self.generator.device)
        return (low + (high - low) * values).to(self.device)


def _spec_from_batch(batch: Mapping[str, Tensor]) -> AugmentSpec:
    def first(key: str) -> int | None:
        value = batch.get(key)
        return None if value is None else int(value.reshape(-1)[0])

    size, mv_size = first("size"), first("mv_size")
    return AugmentSpec(size=size or AugmentSpec.size, mv_size=mv_size)


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def random_crop_boxes(
    batch: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    draw: UniformDraws,
    attempts: int = 10,
) -> Tensor:
    """torchvision's RandomResizedCrop boxes, vectorised: (B, 4) float (y0, x0, h, w) in pixels.

    Up to ``attempts`` (area, aspect) draws per sample, the first that fits is used; if
    none fits, the whole frame cropped to the nearest allowed aspect ratio (torchvision's
    fallback).  Integer sizes and offsets, like torchvision.
    """
    area = height * width * draw.uniform(batch, attempts, low=scale[0], high=scale[1])
    log_ratio = draw.uniform(batch, attempts, low=math.log(ratio[0]), high=math.log(ratio[1]))
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # first fitting attempt (0 if none)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # Fallback: whole frame at the nearest allowed aspect ratio.
    frame_ratio = width / height
    if frame_ratio < min(ratio):
        fallback_w, fallback_h = width, round(width / min(ratio))
    elif frame_ratio > max(ratio):
        fallback_w, fallback_h = round(height * max(ratio)), height
    else:
        fallback_w, fallback_h = width, height
    any_fits = fits.any(dim=1)
    w = torch.where(any_fits, w, torch.full_like(w, fallback_w))
    h = torch.where(any_fits, h, torch.full_like(h, fallback_h))
    position = draw.uniform(batch, 2)
    y0 = torch.floor(position[:, 0] * (height - h + 1)).clamp(max=height - h)
    x0 = torch.floor(position[:, 1] * (width - w + 1)).clamp(max=width - w)
    return torch.stack([y0, x0, h, w], dim=1)


def centre_crop_boxes(batch: int, height: int, width: int, *, fraction: float, device: torch.device) -> Tensor:
    """(B, 4) centred square boxes of side round(fraction * short side)."""
    side = max(1, round(fraction * min(height, width)))
    y0, x0 = (height - side) // 2, (width - side) // 2
    return torch.tensor([y0, x0, side, side], dtype=torch.float32, device=device).expand(batch, 4).clone()


def _affine(boxes: Tensor, height: float, width: float, flip: Tensor) -> Tensor:
    """(B, 2, 3) affine_grid thetas mapping output [-1, 1] onto ``boxes`` of an H x W input.

    Continuous pixel coordinates (pixel i covers [i, i + 1)), align_corners=False:
    input u = 2 X / W - 1, and output v in [-1, 1] maps to X = x0 + (v + 1) / 2 * w.
    A flip mirrors the output: v -> -v.
    """
    y0, x0, h, w = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.to(boxes.dtype)
    theta = torch.zeros(boxes.shape[0], 2, 3, dtype=boxes.dtype, device=boxes.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    return theta


def crop_resize(images: Tensor, boxes: Tensor, *, size: int, flip: Tensor) -> Tensor:
    """Crop (B, C, H, W) float images to ``boxes`` (B, 4) and resize to size x size (bilinear).

    Every channel of a sample shares its box and flip (C may be 3 x T for a clip).
    """
    b, c, h, w = images.shape
    theta = _affine(boxes.to(images.dtype), h, w, flip)
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_motion(windows: Tensor, boxes: Tensor, *, flip: Tensor, geometry: Tensor, size: int, mv_size: int) -> Tensor:
    """Apply a clip's crop box and flip to its motion-vector maps.

    Args:
        windows: (B, N, 2, T, gh, gw) float, channel 0 = x (right +), 1 = y (down +), in
            MV-frame pixels per frame.
        boxes: (B, 4) (y0, x0, h, w) in RGB pixels: the clip's crop boxes.
        flip: (B,) bool, the clip's flips.
        geometry: (B, 4) (cell_h, cell_w, px_h, px_w): an MV cell and an MV-frame pixel
            in RGB pixels.
        size: the clip's output side (motion values are converted to its pixels).
        mv_size: output side of the maps.

    Returns:
        (B, N, 2, T, mv_size, mv_size): x and y in clip-output pixels per frame.
    """
    b, n, _, t, gh, gw = windows.shape
    cell_h, cell_w, px_h, px_w = geometry.unbind(1)
    y0, x0, h, w = boxes.to(windows.dtype).unbind(1)
    cell_boxes = torch.stack([y0 / cell_h, x0 / cell_w, h / cell_h, w / cell_w], dim=1)
    maps = crop_resize(windows.flatten(1, 3), cell_boxes, size=mv_size, flip=flip)
    maps = maps.unflatten(1, (n, 2, t))  # (B, N, 2, T, S_m, S_m)
    # MV-frame px -> RGB px (px_*) -> output px (size / crop side); a flip negates x.
    sign = 1.0 - 2.0 * flip.to(windows.dtype)
    scale_x = sign * px_w * size / w
    scale_y = px_h * size / h
    scales = torch.stack([scale_x, scale_y], dim=1)  # (B, 2)
    return maps * scales[:, None, :, None, None, None]


# --------------------------------------------------------------------------------------
# Photometric
# --------------------------------------------------------------------------------------


def _photometric(video: Tensor, spec: AugmentSpec, draw: UniformDraws) -> Tensor:
    """Colour jitter + grayscale + blur on (B, 3, T, H, W) in [0, 1], per-sample parameters."""
    video = colour_jitter(video, spec=spec, draw=draw)
    b = video.shape[0]
    apply_blur = draw.uniform(b) < spec.blur_p
    sigma = draw.uniform(b, low=spec.blur_sigma[0], high=spec.blur_sigma[1])
    sigma = torch.where(apply_blur, sigma, torch.zeros_like(sigma))
    return gaussian_blur(video, sigma, max_sigma=spec.blur_sigma[1])


def colour_jitter(video: Tensor, *, spec: AugmentSpec, draw: UniformDraws) -> Tensor:
    """One affine colour map per sample, applied to every frame: (B, 3, T, H, W) -> same.

    brightness b, contrast c, saturation s, hue angle a (p = ``jitter_p``), then grayscale
    (p = ``grayscale_p``).  With L the luma row vector and m the frame's mean luma:
    x -> H(a) S(s) (c b x + (1 - c) b m) = A x + (1 - c) b m (S and H keep grey fixed),
    A = c b H(a) S(s), S(s) = s I + (1 - s) 1 L, H(a) a rotation of the YIQ chroma plane.
    """
    b = video.shape[0]
    device, dtype = video.device, video.dtype
    jitter = draw.uniform(b) < spec.jitter_p
    brightness = draw.uniform(b, low=1 - spec.brightness, high=1 + spec.brightness)
    contrast = draw.uniform(b, low=1 - spec.contrast, high=1 + spec.contrast)
    saturation = draw.uniform(b, low=1 - spec.saturation, high=1 + spec.saturation)
    angle = draw.uniform(b, low=-spec.hue, high=spec.hue) * 2 * math.pi
    grey = draw.uniform(b) < spec.grayscale_p
    one = torch.ones_like(brightness)
    brightness, contrast = torch.where(jitter, brightness, one), torch.where(jitter, contrast, one)
    saturation, angle = torch.where(jitter, saturation, one), torch.where(jitter, angle, torch.zeros_like(angle))

    luma = torch.tensor(LUMA, device=device, dtype=dtype)
    eye = torch.eye(3, device=device, dtype=dtype)
    grey_matrix = torch.ones(3, 1, device=device, dtype=dtype) * luma  # every row = L
    sat = saturation[:, None, None] * eye + (1 - saturation)[:, None, None] * grey_matrix
    hue = _yiq_hue_rotation(angle)
    matrix = (contrast * brightness)[:, None, None] * (hue @ sat)
    matrix = torch.where(grey[:, None, None], grey_matrix @ matrix, matrix)  # grey keeps the offset
    mean_luma = torch.einsum("c,bcthw->bt", luma, video) / (video.shape[-1] * video.shape[-2])
    offset = ((1 - contrast) * brightness)[:, None] * mean_luma  # (B, T)
    out = torch.einsum("bij,bjthw->bithw", matrix, video) + offset[:, None, :, None, None]
    return out.clamp_(0.0, 1.0)


def _yiq_hue_rotation(angle: Tensor) -> Tensor:
    """(B,) angles -> (B, 3, 3) RGB matrices rotating chroma in YIQ space (grey stays grey)."""
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=angle.dtype, device=angle.device)
    from_yiq = torch.tensor(_YIQ_TO_RGB, dtype=angle.dtype, device=angle.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=1).view(-1, 3, 3)
    return from_yiq @ rotation @ to_yiq


_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_YIQ_TO_RGB = tuple(map(tuple, torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist()))


def gaussian_blur(video: Tensor, sigma: Tensor, *, max_sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, T, H, W) with a per-sample sigma (B,); 0 = none.

    Kernel radius ceil(3 * max_sigma) (13 taps for sigma <= 2), reflect padding.  Only the
    samples with sigma > 0 are convolved (half the batch by default: half the cost).
    """
    b, c, t, h, w = video.shape
    radius = min(max(1, math.ceil(3 * max_sigma)), h - 1, w - 1)  # reflect padding needs radius < side
    chosen = torch.nonzero(sigma > 0).flatten()
    if radius < 1 or chosen.numel() == 0:
        return video
    offsets = torch.arange(-radius, radius + 1, device=video.device, dtype=video.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[chosen, None].to(video.dtype)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B', taps)
    groups = chosen.numel() * c * t
    weights = kernel[:, None, :].expand(-1, c * t, -1).reshape(groups, 1, -1)
    planes = video.index_select(0, chosen).reshape(1, groups, h, w)
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="reflect"), weights[:, :, None, :], groups=groups)
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="reflect"), weights[:, :, :, None], groups=groups)
    return video.index_copy(0, chosen, planes.reshape(-1, c, t, h, w))


def normalize(images: Tensor, *, channel_dim: int = 1) -> Tensor:
    """ImageNet mean/std normalisation of [0, 1] RGB along ``channel_dim``."""
    shape = [1] * images.ndim
    shape[channel_dim] = 3
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(shape)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(shape)
    return (images - mean).div_(std)


def _as_unit_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is taken as already in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)
