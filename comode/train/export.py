"""Ship the pretrained V-Network: safetensors weights with metadata, loaded back in one call.

Only the V-Network survives pretraining (the I-/M-Networks, heads and transformer are
pretext machinery).  The exported file is plain safetensors -- readable without comode --
whose metadata says how to rebuild and feed the network::

    export_backbone("runs/r3d26/last.pt", "r3d26_ucf101.safetensors")
    vnet = load_backbone("r3d26_ucf101.safetensors")      # or directly a training checkpoint
    features = vnet(clip).mean(dim=(2, 3, 4))              # (B, 3, 16, 112, 112) -> (B, C)

Metadata keys (all strings): format, backbone, width_multiplier, comode_version (of the
exporter), trained_with_comode, task, step, epoch, clip_size, clip_frames, clip_stride,
input_normalization (JSON).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from comode.data.config import MAX_CLIP_FRAMES, MAX_CLIP_STRIDE, MAX_SIZE
from comode.models.backbones import build_backbone
from comode.train.checkpoint import load_checkpoint, replacing
from comode.train.runlock import refuse_store_folder
from comode.version import __version__

__all__ = ["BACKBONE_FORMAT", "VNET_PREFIX", "export_backbone", "load_backbone", "read_backbone_metadata"]

BACKBONE_FORMAT = "comode.backbone/1"
# The V-Network's parameter prefix in training checkpoints (CoMoDe.vnet, in both tasks).
VNET_PREFIX = "vnet."


def _vnet_weights(model_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    weights = {
        key[len(VNET_PREFIX) :]: tensor.detach().cpu().contiguous()
        for key, tensor in model_state.items()
        if key.startswith(VNET_PREFIX)
    }
    if not weights:
        raise ValueError(f"the checkpoint's model has no {VNET_PREFIX}* parameters (not a CoMoDe checkpoint?)")
    return weights


def _metadata(checkpoint: Mapping[str, Any]) -> dict[str, str]:

    model = checkpoint["config"]["model"]
    return {
        "format": BACKBONE_FORMAT,
        "backbone": model["backbone"],
        "width_multiplier": repr(float(model["width_multiplier"])),
        "comode_version": __version__,
        "trained_with_comode": str(checkpoint["comode_version"]),
        "task": str(checkpoint["task"]),
        "step": str(checkpoint["step"]),
        "epoch": str(checkpoint["epoch"]),
        "clip_size": str(checkpoint["config"]["data"]["size"]),
        # The training clip (evaluation shows the network the same); 16 x 4 before they were settings.
        "clip_frames": str(checkpoint["config"]["data"].get("clip_frames", 16)),
        "clip_stride": str(checkpoint["config"]["data"].get("clip_stride", 4)),
        "input_normalization": json.dumps(checkpoint["input_normalization"], sort_keys=True),
    }


def export_backbone(checkpoint_path: str | Path, out_path: str | Path) -> Path:
    """Write the V-Network of a training checkpoint as safetensors (atomically); returns out_path.

    ``out_path`` may replace an earlier export only: never the input, a training checkpoint
    or any other file (ValueError), nor land inside a store (FileExistsError)."""
    out_path = Path(out_path)
    _refuse_target(Path(checkpoint_path), out_path)
    checkpoint = load_checkpoint(checkpoint_path)
    weights = _vnet_weights(checkpoint["model"])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out_path) as temporary:
        save_file(weights, str(temporary), metadata=_metadata(checkpoint))
    return out_path


def _refuse_target(checkpoint_path: Path, out_path: Path) -> None:
    refuse_store_folder(out_path.absolute().parent, option="export to")
    if not os.path.lexists(out_path):
        return
    if checkpoint_path.exists() and out_path.exists() and os.path.samefile(checkpoint_path, out_path):
        raise ValueError(f"export would overwrite its input {checkpoint_path}; name a new .safetensors file")
    if out_path.is_symlink() or not out_path.is_file():
        raise ValueError(f"{out_path} exists and is not a regular file; name a new .safetensors file")
    try:
        read_backbone_metadata(out_path)
        if zipfile.is_zipfile(out_path):
            raise ValueError("a training checkpoint")
    except Exception as error:  # noqa: BLE001 -- anything but an earlier export is kept
        raise ValueError(
            f"{out_path} exists and is not an exported backbone (it may be a training file: {error}); "
            "name a new .safetensors file"
        ) from None


def read_backbone_metadata(path: str | Path) -> dict[str, str]:
    """Metadata of an exported backbone (or of a training checkpoint, in the same form)."""
    path = Path(path)
    if zipfile.is_zipfile(path):  # torch.save files are zip archives; safetensors are not
        return _metadata(load_checkpoint(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != BACKBONE_FORMAT:
        raise ValueError(f"{path} is not a {BACKBONE_FORMAT} file (metadata format: {metadata.get('format')!r})")
    _check_numbers(metadata, path)
    return metadata


# Metadata numbers an exported file may carry: they size the model and the clips, so a file
# from elsewhere must not be able to ask for more memory than any real run uses.
_METADATA_BOUNDS = {
    "width_multiplier": (float, 1 / 64, 8.0),
    "clip_size": (int, 1, MAX_SIZE),
    "clip_frames": (int, 1, MAX_CLIP_FRAMES),
    "clip_stride": (int, 1, MAX_CLIP_STRIDE),
}


def _check_numbers(metadata: Mapping[str, str], path: Path) -> None:
    for key, (kind, low, high) in _METADATA_BOUNDS.items():
        if key not in metadata:
            continue
        try:
            value = kind(metadata[key])
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # NaN fails too
            raise ValueError(
                f"{path}: metadata {key}={metadata[key]!r} is not a {kind.__name__} in [{low:g}, {high:g}]"
            )


def _check_weights(backbone: nn.Module, weights: Mapping[str, Tensor], path: Path) -> None:
    """The weights must be the backbone's (names and shapes) and finite: a file whose metadata
    does not match its tensors, or whose weights are NaN, is refused instead of loaded (NaN
    weights gave R@1 0.5 as a normal-looking result)."""
    expected = {key: tuple(value.shape) for key, value in backbone.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in weights.items()}
    if expected != found:
        differing = sorted(key for key in set(expected) | set(found) if expected.get(key) != found.get(key))
        key = differing[0]
        raise ValueError(
            f"{path}: the weights do not fit the {backbone.__class__.__name__} its metadata describes "
            f"({len(differing)} tensor(s) differ, e.g. {key}: file {found.get(key)}, model {expected.get(key)})"
        )
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: tensor {key} holds NaN or infinite values; refusing these weights")


def load_backbone(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Build the right backbone and load its weights, from an export or a training checkpoint.

    Returns:
        The V-Network (train mode, as any freshly built module), mapping (B, 3, T, H, W) to
        its unpooled feature map (B, C, T', H', W'); ``out_channels`` is C, and
        ``comode_metadata`` holds the metadata dict (input normalisation included).
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        checkpoint = load_checkpoint(path, map_location=map_location)
        metadata, weights = _metadata(checkpoint), _vnet_weights(checkpoint["model"])
    else:
        metadata = read_backbone_metadata(path)
        with safe_open(str(path), framework="pt", device=str(map_location)) as handle:
            weights = {key: handle.get_tensor(key) for key in handle.keys()}
    with torch.device("meta"):  # shapes only: no memory, whatever the metadata says
        shapes = build_backbone(metadata["backbone"], width_multiplier=float(metadata["width_multiplier"]))
    _check_weights(shapes, weights, path)
    backbone = build_backbone(metadata["backbone"], width_multiplier=float(metadata["width_multiplier"]))
    backbone.load_state_dict(weights, strict=True)
    backbone.comode_metadata = metadata
    return backbone.to(map_location)
