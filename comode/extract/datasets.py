"""Dataset adapters: a dataset on disk -> videos with labels and split membership.

Formats (``load_dataset(kind, root)``):

* ``folder``: ``ROOT/<class>/<...>/<video>``, any container.  If ROOT holds ``train/`` and
  ``test/`` (``val/`` counts as test) those define split "1"; otherwise split "1" is a
  deterministic ~80/20 train/test assignment by a hash of the video id (stable across
  machines and runs, independent of which other files exist).
* ``ucf101``: videos under ROOT (``<Class>/v_<Class>_gXX_cYY.avi`` or flat); annotations in
  ``ROOT/ucfTrainTestlist`` (classInd.txt, trainlist0N.txt, testlist0N.txt); splits "1".."3".
  A list entry matches a file by name, else by stem when exactly one file has it (videos
  re-encoded to another container).
* ``hmdb51``: videos ``ROOT/<class>/<name>.avi``; annotations ``<class>_test_split{1,2,3}.txt``
  (id 1 = train, 2 = test, 0 = not in that split) in ``ROOT/testTrainMulti_7030_splits``;
  classes sorted alphabetically (the usual convention): the classes with split files and the
  official HMDB51 classes present as ``ROOT/<class>/`` folders of videos, so a class whose
  split files are absent keeps its index (and its absent files are named).  Entries match
  files by name, else by stem, as for UCF101.
* ``sample``: what ``comode sample`` writes (:mod:`comode.sampleset`): videos anywhere
  under ROOT (``train|test/<motion>/<video>.mp4``, so ``folder`` reads it too) and
  ``ROOT/labels.csv`` (``path,split,<label set>,...``: every column after ``split`` is a label
  set, e.g. ``motion,scene``).  The first label set is the primary ``label``/``classes``; the
  CSV's ``split`` (train/test) defines split "1"; every video also gets ``labels`` {set: index
  into ``label_sets[set]``, whose names are sorted} and ``label_names``.  Rows without a file
  are reported as missing.
* ``kinetics400``: CSV annotations (:mod:`comode.extract.kinetics`) in ``ROOT/annotations``
  or ROOT.  Split "1": train vs validation (the usual protocol); split "test": train vs the
  test CSV, when there is one.

Unlisted videos, one rule for every annotated format: a video on disk that no annotation
names is extracted unlabelled (label -1) and in no split (pretraining uses every complete
video), and named in the dataset report (``DatasetIndex.unlisted``).  Annotation entries
without a file are named with their reason (``missing``); the annotation files read are
recorded with their digests (``annotation_files``, ``fingerprint``), the expected ones that
are absent in ``incomplete``, the files and rows set aside in ``skipped``.

Video ids are derived from the path relative to ROOT, are safe as Zarr group names and
file names, and are unique within a dataset (see :func:`safe_video_id`).  Annotation
entries that would point outside ROOT (absolute, ``..``, NUL) are refused, not followed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from comode.extract.annotations import AnnotationFiles, DatasetError, fingerprint

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
DATASET_KINDS = ("folder", "ucf101", "hmdb51", "kinetics400", "sample")
TRAIN, TEST = "train", "test"
MAX_ID_LENGTH = 150


__all__ = [
    "DatasetError",
    "DatasetIndex",
    "VideoItem",
    "load_dataset",
    "safe_video_id",
    "walk_videos",
    "write_sample_labels",
]

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


# ---------------------------------------------------------------- folder


def _hash_split(video_id: str) -> str:
    # ~20% test: first byte of sha1 below 51.2 (= 256 * 0.2).
    return TEST if hashlib.sha1(video_id.encode()).digest()[0] < 52 else TRAIN


def _load_folder(root: Path) -> DatasetIndex:
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


# ---------------------------------------------------------------- sample (folder + labels.csv)

SAMPLE_LABELS_FILE = "labels.csv"


def write_sample_labels(root: Path, label_sets: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Write ``root/labels.csv`` of the sample format: the header ``path,split,<label set>,...``
    (the first label set is the primary one), then ``rows`` (path relative to ``root`` with
    POSIX separators, train|test, one class name per label set).  Returns its path."""
    path = Path(root) / SAMPLE_LABELS_FILE
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "split", *label_sets])
        writer.writerows(rows)
    return path


def _load_sample(root: Path) -> DatasetIndex:
    labels_file = root / SAMPLE_LABELS_FILE
    if not labels_file.is_file():
        raise DatasetError(
            f"{labels_file} not found: the sample format is the folder layout `comode sample` writes "
            "plus labels.csv (columns path,split,<label set>,...)"
        )
    annotations = AnnotationFiles()
    reader = csv.DictReader(io.StringIO(annotations.text(labels_file), newline=""))
    columns = list(reader.fieldnames or [])
    rows = list(reader)
    if columns[:2] != ["path", "split"] or len(columns) < 3 or len(set(columns)) < len(columns):
        raise DatasetError(
            f"{labels_file}: expected a header path,split,<label set>,... with distinct names, got {','.join(columns)}"
        )
    set_names = columns[2:]
    by_source: dict[str, dict[str, str]] = {}
    missing: list[tuple[str, str]] = []
    for number, row in enumerate(rows, 2):
        entry, split = (row.get("path") or "").strip(), (row.get("split") or "").strip().lower()
        if split not in (TRAIN, TEST):
            raise DatasetError(f"{labels_file}:{number}: split must be train or test, got {row.get('split')!r}")
        path = inside_root(entry)
        if path is None:
            missing.append((entry, "outside dataset root"))
        elif not (root / path).is_file():
            missing.append((entry, "not on disk"))
        else:
            by_source[path.as_posix()] = {"split": split, **{name: (row.get(name) or "").strip() for name in set_names}}
    label_sets = {name: tuple(sorted({r[name] for r in by_source.values() if r[name]})) for name in set_names}
    primary = set_names[0]
    entries, labels, names, unlisted = {}, {}, {}, []
    for file in walk_videos(root):
        source = relative_path(file, root)
        row = by_source.get(source)
        if row is None:  # on disk but not in labels.csv: the unlisted rule (unlabelled, no split)
            unlisted.append(source)
            row = {name: "" for name in set_names}
        else:
            entries[source] = (
                label_sets[primary].index(row[primary]) if row[primary] else -1,
                row[primary] or None,
                {"1": row["split"]},
            )
        labels[source] = {n: label_sets[n].index(row[n]) if row[n] else -1 for n in set_names}
        names[source] = {n: row[n] or None for n in set_names}
    index = build_index(
        "sample",
        root,
        label_sets[primary],
        ["1"],
        entries,
        missing,
        annotations=annotations,
        unlisted=unlisted,
        label_sets=label_sets,
    )
    videos = tuple(replace(v, labels=labels[v.source], label_names=names[v.source]) for v in index.videos)
    return replace(index, videos=videos)


# ---------------------------------------------------------------- entry point


def load_dataset(kind: str, root: str | Path, *, annotations: str | Path | None = None) -> DatasetIndex:
    """Index the dataset of format ``kind`` under ``root``."""
    if kind not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset format {kind!r}; choose one of {', '.join(DATASET_KINDS)}")
    root = Path(os.path.normpath(Path(root).expanduser().absolute()))  # no "x/../" in recorded paths
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder")
    annotations = Path(annotations).expanduser() if annotations else None
    if kind == "folder":
        return _load_folder(root)
    if kind == "sample":
        return _load_sample(root)
    # The annotated benchmarks (their own module; it builds on the helpers here).
    from comode.extract import benchmark_datasets

    if kind == "ucf101":
        return benchmark_datasets.load_ucf101(root, annotations)
    if kind == "hmdb51":
        return benchmark_datasets.load_hmdb51(root, annotations)
    return benchmark_datasets.load_kinetics400(root, annotations)
