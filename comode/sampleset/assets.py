"""The bundled pictures of the sample set (``assets/``: scikit-image sample data, CC0 /
public domain; ``assets/README.md`` gives sources and licences) and how scenes are made
from them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ASSETS = Path(__file__).with_name("assets")
# Scene names; scene X is the bundled photo assets/scene_X.jpg.  The first four are the default.
SCENES = ("astronaut", "cat", "coffee", "rocket", "hubble", "camera")
TEXTURES = ("brick", "gravel", "grass")
SCENE_BLUR = 8.0  # px of the photo: see scene_photo
SCENE_GRAIN = ("gravel", 12.0)  # the fine texture every scene shares, and its strength (luma std)
SCENE_LUMA = (110.0, 40.0)  # mean and standard deviation of every scene's brightness: see scene_photo


@lru_cache(maxsize=None)
def scene_photo(scene: str) -> Image.Image:
    """The background of a scene, RGB (312, 416): the bundled photo blurred by
    ``SCENE_BLUR`` px, brought to the same mean and spread of brightness as every other
    scene (``SCENE_LUMA``), with one fine grain shared by all scenes on top (``SCENE_GRAIN``).

    Why: MPEG block matching finds small spurious vectors around moving objects, and how
    many depends on the background's texture and brightness there (a half-object,
    half-background block follows whichever half dominates).  With the photos as they
    are, the motion vectors alone told the four scenes apart (the MV-statistics leakage
    probe of :mod:`comode.evaluate.leakage`: 48-52 % against 25 % chance; blur or
    brightness alone did not fix it).  Scenes that differ only in their large-scale colour
    layout, over the same grain, leave the vectors alike everywhere (26 %, at chance) while
    a single frame still names the scene (100 %)."""
    with Image.open(ASSETS / f"scene_{scene}.jpg") as image:
        photo = np.asarray(image.convert("RGB").filter(ImageFilter.GaussianBlur(SCENE_BLUR)), np.float32)
    luma = photo @ np.array([0.299, 0.587, 0.114], np.float32)
    scale = SCENE_LUMA[1] / max(float(luma.std()), 1.0)
    normalised = (photo - luma.mean()) * scale + SCENE_LUMA[0]
    grain = np.asarray(texture_photo(SCENE_GRAIN[0]), np.float32)
    reps = (-(-photo.shape[0] // grain.shape[0]), -(-photo.shape[1] // grain.shape[1]))
    grain = np.tile(grain, reps)[: photo.shape[0], : photo.shape[1]]
    grain = (grain - grain.mean()) / max(float(grain.std()), 1.0) * SCENE_GRAIN[1]
    return Image.fromarray(np.clip(normalised + grain[..., None], 0, 255).round().astype(np.uint8), "RGB")


@lru_cache(maxsize=None)
def texture_photo(texture: str) -> Image.Image:
    """The bundled grey texture, L (128, 128)."""
    with Image.open(ASSETS / f"texture_{texture}.jpg") as image:
        return image.convert("L")
