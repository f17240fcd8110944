"""The ``folder`` format: ``ROOT/<class>/<...>/<video>``, any container.

If ROOT holds ``train/`` and ``test/`` (``val/`` counts as test) those define split "1";
otherwise split "1" is a deterministic ~80/20 train/test assignment by a hash of the video id
(stable across machines and runs, independent of which other files exist).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from comode.extract.datasets.index import (
    TEST,
    TRAIN,
    DatasetIndex,
    build_index,
    relative_path,
    safe_video_id,
    walk_videos,
)

__all__ = ["load_folder"]


def _hash_split(video_id: str) -> str:
    # ~20% test: first byte of sha1 below 51.2 (= 256 * 0.2).
    return TEST if hashlib.sha1(video_id.encode()).digest()[0] < 52 else TRAIN


def load_folder(root: Path, annotations: Path | None = None) -> DatasetIndex:
    """Index ROOT by its folders (``annotations`` is not used: the folders are the labels)."""
    top = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    split_dirs = {k: v for k, v in top.items() if k in ("train", "test", "val")}
    if {"train", "test"} <= set(split_dirs) or {"train", "val"} <= set(split_dirs):
        layout = [(directory, TRAIN if name == "train" else TEST) for name, directory in split_dirs.items()]
    else:
        layout = [(root, None)]
    found: list[tuple[Path, str | None, str | None]] = []  # (file, class, membership)
    for base, membership in layout:
        for file in walk_videos(base):
            parts = file.relative_to(base).parts
            found.append((file, parts[0] if len(parts) > 1 else None, membership))
    classes = sorted({c for _, c, _ in found if c is not None})
    entries = {}
    for file, class_name, membership in found:
        source = relative_path(file, root)
        label = classes.index(class_name) if class_name is not None else -1
        entries[source] = (label, class_name, {"1": membership or _hash_split(safe_video_id(source))})
    return build_index("folder", root, classes, ["1"], entries, [])
