"""What every dataset reader builds on: the index types, video ids, the walk over ROOT.

A reader (one module per format in this package) turns a dataset on disk into a
:class:`DatasetIndex` with :func:`build_index`; the rules it shares (ids, entries that point
outside ROOT, which files are videos, finding the file an annotation entry names) are here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from comode.extract.annotations import AnnotationFiles, DatasetError, fingerprint

__all__ = [
    "DatasetError",
    "DatasetIndex",
    "FileMatcher",
    "TEST",
    "TRAIN",
    "VIDEO_EXTENSIONS",
    "VideoItem",
    "annotation_dir",
    "build_index",
    "inside_root",
    "relative_path",
    "safe_video_id",
    "walk_videos",
]

# What the folder layout takes for a video (any container ffmpeg reads; the content is probed,
# the name only selects files).  Broadcast/camcorder (m2ts, mts, mxf, dv, vob), web (f4v,
# asf), raw elementary streams (h264, hevc, m2v, ivf) and animated GIF (the TGIF dataset) are
# videos too.  Not .ogg: mostly audio, and an audio-only file would be recorded as failed.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".qt",
        ".3gp",
        ".3g2",
        ".mkv",
        ".mk3d",
        ".webm",
        ".avi",
        ".divx",
        ".wmv",
        ".asf",
        ".flv",
        ".f4v",
        ".ogv",
        ".mpg",
        ".mpeg",
        ".mpe",
        ".m1v",
        ".m2v",
        ".vob",
        ".ts",
        ".m2ts",
        ".mts",
        ".mxf",
        ".dv",
        ".nut",
        ".rm",
        ".rmvb",
        ".y4m",
        ".h264",
        ".264",
        ".h265",
        ".265",
        ".hevc",
        ".ivf",
        ".gif",
    }
)
TRAIN, TEST = "train", "test"
MAX_ID_LENGTH = 150

# A video on disk that no annotation names (every annotated format): unlabelled, in no split.
UNLISTED_ENTRY: tuple[int, None, dict[str, str]] = (-1, None, {})


@dataclass(frozen=True)
class VideoItem:
    video_id: str  # safe Zarr group name, unique within the dataset
    path: Path  # absolute path of the source video
    label: int  # index into DatasetIndex.classes, -1 = unlabelled
    class_name: str | None
    splits: Mapping[str, str] = field(default_factory=dict)  # split name -> "train" | "test"
    source: str = ""  # path relative to the dataset root, POSIX separators
    # Extra label sets (format "sample"): set name -> index into DatasetIndex.label_sets[set]
    # (-1 = no label), and the same labels by name.  Empty for the other formats.
    labels: Mapping[str, int] = field(default_factory=dict)
    label_names: Mapping[str, str | None] = field(default_factory=dict)
    annotations: str = ""  # fingerprint of what the labels and splits come from (DatasetIndex.fingerprint)


@dataclass(frozen=True)
class DatasetIndex:
    name: str
    root: Path
    classes: tuple[str, ...]
    split_names: tuple[str, ...]
    videos: tuple[VideoItem, ...]  # sorted by video_id, files that exist
    missing: tuple[tuple[str, str], ...] = ()  # (annotation entry, reason)
    label_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # set name -> sorted names
    unlisted: tuple[str, ...] = ()  # sources on disk no annotation names: unlabelled, in no split
    skipped: tuple[tuple[str, str], ...] = ()  # (annotation file or row, why it was not used)
    incomplete: tuple[tuple[str, str], ...] = ()  # (expected annotation file that is absent, its purpose)
    annotation_files: Mapping[str, str] = field(default_factory=dict)  # path -> sha256, as read
    fingerprint: str = ""  # of the annotation files, classes and splits (annotations.fingerprint)


# ---------------------------------------------------------------- ids and paths

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_video_id(relative_path: str) -> str:
    """A Zarr-group- and file-name-safe id for a path relative to the dataset root.

    Keeps ``[A-Za-z0-9._-]``, maps "/" to "__", other characters to "_", strips leading dots
    and underscores (no hidden names, no "." or ".."), and shortens ids over 150 characters
    with a hash of the full path.  Uniqueness across a dataset is ensured by
    :func:`_unique_ids`.
    """
    if "\x00" in relative_path:
        raise ValueError("path contains a NUL byte")
    text = _UNSAFE.sub("_", relative_path.replace("\\", "/").replace("/", "__")).lstrip("._-")
    if not text:
        text = "video-" + _digest(relative_path, 10)
    if len(text) > MAX_ID_LENGTH:
        text = text[: MAX_ID_LENGTH - 11] + "-" + _digest(relative_path, 10)
    return text


def _digest(text: str, length: int) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:length]


def _unique_ids(sources: Iterable[str]) -> dict[str, str]:
    """source -> id; sources whose ids collide (case-insensitively, as on macOS/Windows
    file systems) all get a hash suffix, so no id depends on which other files exist."""
    sources = list(sources)
    ids = {source: safe_video_id(source) for source in sources}
    seen: dict[str, int] = {}
    for video_id in ids.values():
        seen[video_id.lower()] = seen.get(video_id.lower(), 0) + 1
    return {source: (f"{vid}-{_digest(source, 8)}" if seen[vid.lower()] > 1 else vid) for source, vid in ids.items()}


def inside_root(entry: str) -> PurePosixPath | None:
    """The entry as a relative POSIX path, or None if it could point outside the root."""
    if "\x00" in entry:
        return None
    path = PurePosixPath(entry.strip().replace("\\", "/"))
    if not entry.strip() or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", entry.strip()):
        return None
    return path


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def walk_videos(root: Path) -> list[Path]:
    """Video files below root; file symlinks followed, directory symlinks walked once
    (a symlink loop cannot make this hang)."""
    found, visited = [], set()
    for directory, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in visited:
            subdirs[:] = []
            continue
        visited.add(real)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / name for name in sorted(files) if _is_video(Path(name)))
    return found


def build_index(
    name: str,
    root: Path,
    classes: Iterable[str],
    split_names: Iterable[str],
    entries: Mapping[str, tuple[int, str | None, dict[str, str]]],
    missing: list[tuple[str, str]],
    *,
    annotations: AnnotationFiles | None = None,
    unlisted: Iterable[str] = (),
    label_sets: Mapping[str, tuple[str, ...]] | None = None,
) -> DatasetIndex:
    """entries: source (relative POSIX path of an existing file) -> (label, class, splits);
    ``unlisted``: the sources among them that no annotation names (they get
    :data:`UNLISTED_ENTRY`).  Every video carries the index's fingerprint."""
    annotations = annotations or AnnotationFiles()
    classes, split_names = tuple(classes), tuple(split_names)
    unlisted = tuple(sorted(unlisted))
    entries = {**entries, **{source: UNLISTED_ENTRY for source in unlisted}}
    digest = fingerprint(name, annotations.read, classes, split_names, label_sets)
    ids = _unique_ids(entries)
    videos = [
        VideoItem(
            video_id=ids[source],
            path=(root / source).absolute(),
            label=label,
            class_name=class_name,
            splits=dict(splits),
            source=source,
            annotations=digest,
        )
        for source, (label, class_name, splits) in entries.items()
    ]
    return DatasetIndex(
        name=name,
        root=root,
        classes=classes,
        split_names=split_names,
        videos=tuple(sorted(videos, key=lambda v: v.video_id)),
        missing=tuple(sorted(set(missing))),
        label_sets=dict(label_sets or {}),
        unlisted=unlisted,
        skipped=tuple(annotations.skipped),
        incomplete=tuple(annotations.absent),
        annotation_files=dict(annotations.read),
        fingerprint=digest,
    )


def relative_path(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# ---------------------------------------------------------------- annotation entries -> files


def annotation_dir(root: Path, annotations: Path | None, default: str) -> Path:
    """The annotation folder: ``annotations`` if given, else ``root/default``; it must exist."""
    directory = Path(annotations) if annotations else root / default
    if not directory.is_dir():
        raise DatasetError(
            f"annotation folder {directory} not found (expected {default}/ under the dataset root, "
            "or pass --annotations)"
        )
    return directory


class FileMatcher:
    """The videos under a root, found for annotation entries by file name, else by stem when
    exactly one video has that stem (the list says ``.avi``, the file was re-encoded to
    ``.mp4``).  Remembers what it matched: the rest is unlisted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = walk_videos(root)
        self.by_name = {path.name: path for path in self.files}
        self.by_stem: dict[str, list[Path]] = {}
        for path in self.files:
            self.by_stem.setdefault(path.stem, []).append(path)
        self.matched: set[str] = set()

    def find(self, name: str) -> tuple[str | None, str]:
        """(source of the file for entry file name ``name``, or None and why not)."""
        file = self.by_name.get(name)
        if file is None:
            candidates = self.by_stem.get(PurePosixPath(name).stem, [])
            if len(candidates) > 1:
                names = ", ".join(sorted(relative_path(c, self.root) for c in candidates))
                return None, f"not on disk; several files with its stem, none chosen: {names}"
            file = candidates[0] if candidates else None
        if file is None:
            return None, "not on disk"
        source = relative_path(file, self.root)
        self.matched.add(source)
        return source, ""

    def unlisted(self) -> list[str]:
        return sorted({relative_path(f, self.root) for f in self.files} - self.matched)
