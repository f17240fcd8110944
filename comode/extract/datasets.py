"""Dataset adapters: a dataset on disk -> videos with labels and split membership.

Formats (``load_dataset(kind, root)``):

* ``folder``: ``ROOT/<class>/<...>/<video>``, any container.  If ROOT holds ``train/`` and
  ``test/`` (``val/`` counts as test) those define split "1"; otherwise split "1" is a
  deterministic ~80/20 train/test assignment by a hash of the video id (stable across
  machines and runs, independent of which other files exist).
* ``ucf101``: videos under ROOT (``<Class>/v_<Class>_gXX_cYY.avi`` or flat); annotations in
  ``ROOT/ucfTrainTestlist`` (classInd.txt, trainlist0N.txt, testlist0N.txt); splits "1".."3".
* ``hmdb51``: videos ``ROOT/<class>/<name>.avi``; annotations ``<class>_test_split{1,2,3}.txt``
  (id 1 = train, 2 = test, 0 = not in that split) in ``ROOT/testTrainMulti_7030_splits``;
  classes sorted alphabetically (the usual convention).
* ``sample``: what ``comode sample`` writes (:mod:`comode.sampleset`): videos anywhere
  under ROOT (``train|test/<motion>/<video>.mp4``, so ``folder`` reads it too) and
  ``ROOT/labels.csv`` (``path,split,<label set>,...``: every column after ``split`` is a label
  set, e.g. ``motion,scene``).  The first label set is the primary ``label``/``classes``; the
  CSV's ``split`` (train/test) defines split "1"; every video also gets ``labels`` {set: index
  into ``label_sets[set]``, whose names are sorted} and ``label_names``.  Videos on disk that
  the CSV does not list are unlabelled (-1) with the hash split; rows without a file are
  reported as missing.
* ``kinetics400``: CSV annotations (``label,youtube_id,time_start,time_end,split[,is_cc]``) in
  ``ROOT/annotations`` or ROOT; files ``[<split>/][<label>/]<id>_<start:06d>_<end:06d>.<ext>``
  or ``<id>.<ext>``.  Split "1": train stays train; validate/val/test become test (the usual
  protocol evaluates on the validation set).

Video ids are derived from the path relative to ROOT, are safe as Zarr group names and
file names, and are unique within a dataset (see :func:`safe_video_id`).  Annotation
entries that would point outside ROOT (absolute, ``..``, NUL) are refused, not followed.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

# What the folder layout takes for a video (any container ffmpeg reads; the content is probed,
# the name only selects files).  Broadcast/camcorder (m2ts, mts, mxf, dv, vob), web (f4v,
# asf), raw elementary streams (h264, hevc, m2v, ivf) and animated GIF (the TGIF dataset) are
# videos too.  Not .ogg: mostly audio, and an audio-only file would be recorded as failed.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".mkv", ".mk3d", ".webm", ".avi", ".divx", ".wmv", ".asf",
    ".flv", ".f4v", ".ogv", ".mpg", ".mpeg", ".mpe", ".m1v", ".m2v", ".vob", ".ts", ".m2ts", ".mts", ".mxf",
    ".dv", ".nut", ".rm", ".rmvb", ".y4m", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".gif",
})
DATASET_KINDS = ("folder", "ucf101", "hmdb51", "kinetics400", "sample")
TRAIN, TEST = "train", "test"
MAX_ID_LENGTH = 150


class DatasetError(ValueError):
    """The dataset cannot be indexed; the message says which file and what is expected."""


@dataclass(frozen=True)
class VideoItem:
    video_id: str                # safe Zarr group name, unique within the dataset
    path: Path                   # absolute path of the source video
    label: int                   # index into DatasetIndex.classes, -1 = unlabelled
    class_name: str | None
    splits: Mapping[str, str] = field(default_factory=dict)  # split name -> "train" | "test"
    source: str = ""             # path relative to the dataset root, POSIX separators
    # Extra label sets (format "sample"): set name -> index into DatasetIndex.label_sets[set]
    # (-1 = no label), and the same labels by name.  Empty for the other formats.
    labels: Mapping[str, int] = field(default_factory=dict)
    label_names: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetIndex:
    name: str
    root: Path
    classes: tuple[str, ...]
    split_names: tuple[str, ...]
    videos: tuple[VideoItem, ...]                     # sorted by video_id, files that exist
    missing: tuple[tuple[str, str], ...] = ()         # (annotation entry, reason)
    label_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # set name -> sorted names


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


def _inside_root(entry: str) -> PurePosixPath | None:
    """The entry as a relative POSIX path, or None if it could point outside the root."""
    if "\x00" in entry:
        return None
    path = PurePosixPath(entry.strip().replace("\\", "/"))
    if not entry.strip() or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", entry.strip()):
        return None
    return path


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _walk_videos(root: Path) -> list[Path]:
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


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as error:
        raise DatasetError(f"cannot read annotation file {path}: {error.strerror}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _build(name: str, root: Path, classes: Iterable[str], split_names: Iterable[str],
           entries: Mapping[str, tuple[int, str | None, dict[str, str]]], missing: list[tuple[str, str]]) -> DatasetIndex:
    """entries: source (relative POSIX path of an existing file) -> (label, class, splits)."""
    ids = _unique_ids(entries)
    videos = [VideoItem(video_id=ids[source], path=(root / source).absolute(), label=label, class_name=class_name,
                        splits=dict(splits), source=source)
              for source, (label, class_name, splits) in entries.items()]
    return DatasetIndex(name=name, root=root, classes=tuple(classes), split_names=tuple(split_names),
                        videos=tuple(sorted(videos, key=lambda v: v.video_id)), missing=tuple(missing))


def _relative(path: Path, root: Path) -> str:
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
        for file in _walk_videos(base):
            parts = file.relative_to(base).parts
            found.append((file, parts[0] if len(parts) > 1 else None, membership))
    classes = sorted({c for _, c, _ in found if c is not None})
    entries = {}
    for file, class_name, membership in found:
        source = _relative(file, root)
        label = classes.index(class_name) if class_name is not None else -1
        entries[source] = (label, class_name, {"1": membership or _hash_split(safe_video_id(source))})
    return _build("folder", root, classes, ["1"], entries, [])


# ---------------------------------------------------------------- sample (folder + labels.csv)

SAMPLE_LABELS_FILE = "labels.csv"


def _load_sample(root: Path) -> DatasetIndex:
    labels_file = root / SAMPLE_LABELS_FILE
    if not labels_file.is_file():
        raise DatasetError(f"{labels_file} not found: the sample format is the folder layout `comode sample` writes "
                           "plus labels.csv (columns path,split,<label set>,...)")
    with labels_file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if columns[:2] != ["path", "split"] or len(columns) < 3 or len(set(columns)) < len(columns):
        raise DatasetError(f"{labels_file}: expected a header path,split,<label set>,... with distinct names, "
                           f"got {','.join(columns)}")
    set_names = columns[2:]
    by_source: dict[str, dict[str, str]] = {}
    missing: list[tuple[str, str]] = []
    for number, row in enumerate(rows, 2):
        entry, split = (row.get("path") or "").strip(), (row.get("split") or "").strip().lower()
        if split not in (TRAIN, TEST):
            raise DatasetError(f"{labels_file}:{number}: split must be train or test, got {row.get('split')!r}")
        path = _inside_root(entry)
        if path is None:
            missing.append((entry, "outside dataset root"))
        elif not (root / path).is_file():
            missing.append((entry, "not on disk"))
        else:
            by_source[path.as_posix()] = {"split": split, **{name: (row.get(name) or "").strip() for name in set_names}}
    label_sets = {name: tuple(sorted({r[name] for r in by_source.values() if r[name]})) for name in set_names}
    primary = set_names[0]
    entries, labels, names = {}, {}, {}
    for file in _walk_videos(root):
        source = _relative(file, root)
        row = by_source.get(source)
        if row is None:  # on disk but not in labels.csv: unlabelled, hash split (as in "folder")
            entries[source] = (-1, None, {"1": _hash_split(safe_video_id(source))})
            row = {name: "" for name in set_names}
        else:
            entries[source] = (label_sets[primary].index(row[primary]) if row[primary] else -1, row[primary] or None,
                               {"1": row["split"]})
        labels[source] = {n: label_sets[n].index(row[n]) if row[n] else -1 for n in set_names}
        names[source] = {n: row[n] or None for n in set_names}
    index = _build("sample", root, label_sets[primary], ["1"], entries, sorted(set(missing)))
    videos = tuple(replace(v, labels=labels[v.source], label_names=names[v.source]) for v in index.videos)
    return replace(index, videos=videos, label_sets=label_sets)


# ---------------------------------------------------------------- ucf101 / hmdb51

def _annotation_dir(root: Path, annotations: Path | None, default: str) -> Path:
    directory = Path(annotations) if annotations else root / default
    if not directory.is_dir():
        raise DatasetError(f"annotation folder {directory} not found (expected {default}/ under the dataset root, "
                           "or pass --annotations)")
    return directory


def _files_by_name(root: Path) -> dict[str, Path]:
    return {path.name: path for path in _walk_videos(root)}


def _load_ucf101(root: Path, annotations: Path | None) -> DatasetIndex:
    folder = _annotation_dir(root, annotations, "ucfTrainTestlist")
    class_file = folder / "classInd.txt"
    if not class_file.is_file():
        raise DatasetError(f"{class_file} not found: UCF101 needs classInd.txt ('1 ApplyEyeMakeup' per line)")
    classes = []
    for number, line in enumerate(_read_lines(class_file), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise DatasetError(f"{class_file}:{number}: expected '<index> <ClassName>', got {line!r}")
        classes.append(fields[1])
    on_disk = _files_by_name(root)
    memberships: dict[str, dict[str, str]] = {}
    missing: list[tuple[str, str]] = []
    split_names = []
    for split in ("1", "2", "3"):
        lists = [(folder / f"trainlist0{split}.txt", TRAIN), (folder / f"testlist0{split}.txt", TEST)]
        if not any(path.is_file() for path, _ in lists):
            continue
        split_names.append(split)
        for path, membership in lists:
            for line in _read_lines(path) if path.is_file() else []:
                entry = line.split()[0]
                if _inside_root(entry) is None:
                    missing.append((entry, "outside dataset root"))
                elif (file := on_disk.get(PurePosixPath(entry).name)) is None:
                    missing.append((entry, "not on disk"))
                else:
                    memberships.setdefault(_relative(file, root), {})[split] = membership
    entries = {}
    for name, file in on_disk.items():
        source = _relative(file, root)
        class_name = _ucf_class(name, classes)
        entries[source] = (classes.index(class_name) if class_name else -1, class_name, memberships.get(source, {}))
    return _build("ucf101", root, classes, split_names, entries, sorted(set(missing)))


def _ucf_class(file_name: str, classes: list[str]) -> str | None:
    """'v_ApplyEyeMakeup_g08_c01.avi' -> 'ApplyEyeMakeup' (case-insensitive, as in the lists)."""
    match = re.match(r"v_(.+)_g\d+_c\d+", file_name)
    if not match:
        return None
    lowered = {c.lower(): c for c in classes}
    return lowered.get(match.group(1).lower())


def _load_hmdb51(root: Path, annotations: Path | None) -> DatasetIndex:
    folder = _annotation_dir(root, annotations, "testTrainMulti_7030_splits")
    pattern = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")
    split_files = [(m["cls"], m["split"], p) for p in sorted(folder.iterdir()) if (m := pattern.match(p.name))]
    if not split_files:
        raise DatasetError(f"no '<class>_test_split<N>.txt' files in {folder}")
    classes = sorted({cls for cls, _, _ in split_files})
    on_disk = _files_by_name(root)
    memberships: dict[str, dict[str, str]] = {}
    labels: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for class_name, split, path in split_files:
        for number, line in enumerate(_read_lines(path), 1):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DatasetError(f"{path}:{number}: expected '<video file> <0|1|2>', got {line!r}")
            entry, code = fields
            if _inside_root(entry) is None or len(PurePosixPath(entry).parts) != 1:
                missing.append((entry, "outside dataset root"))
                continue
            file = on_disk.get(entry)
            if file is None:
                missing.append((entry, "not on disk"))
                continue
            source = _relative(file, root)
            labels[source] = class_name
            if code != "0":
                memberships.setdefault(source, {})[split] = TRAIN if code == "1" else TEST
    entries = {}
    for file in on_disk.values():
        source = _relative(file, root)
        class_name = labels.get(source) or (file.parent.name if file.parent.name in classes else None)
        entries[source] = (classes.index(class_name) if class_name else -1, class_name, memberships.get(source, {}))
    split_names = sorted({split for _, split, _ in split_files})
    return _build("hmdb51", root, classes, split_names, entries, sorted(set(missing)))


# ---------------------------------------------------------------- kinetics400

_KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def _kinetics_csvs(root: Path, annotations: Path | None) -> list[Path]:
    if annotations:
        target = Path(annotations)
        files = sorted(target.glob("*.csv")) if target.is_dir() else [target]
    else:
        files = sorted((root / "annotations").glob("*.csv")) or sorted(root.glob("*.csv"))
    files = [f for f in files if f.is_file()]
    if not files:
        raise DatasetError(f"no Kinetics annotation CSV found (looked in {annotations or root / 'annotations'} and "
                           f"{root}); expected columns {','.join(_KINETICS_COLUMNS)}")
    return files


def _load_kinetics400(root: Path, annotations: Path | None) -> DatasetIndex:
    rows = []
    for path in _kinetics_csvs(root, annotations):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            absent = [c for c in _KINETICS_COLUMNS if c not in (reader.fieldnames or [])]
            if absent:
                raise DatasetError(f"{path}: missing columns {absent}; expected header {','.join(_KINETICS_COLUMNS)}")
            rows.extend(reader)
    classes = sorted({row["label"].strip() for row in rows if row["label"].strip()})
    by_stem: dict[str, Path] = {}
    for file in _walk_videos(root):
        by_stem.setdefault(file.stem, file)
    entries, missing = {}, []
    for row in rows:
        youtube_id = row["youtube_id"].strip()
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            missing.append((youtube_id, f"bad time_start/time_end {row['time_start']!r}/{row['time_end']!r}"))
            continue
        if _inside_root(youtube_id) is None or "/" in youtube_id:
            missing.append((youtube_id, "outside dataset root"))
            continue
        file = by_stem.get(f"{youtube_id}_{start:06d}_{end:06d}") or by_stem.get(youtube_id)
        if file is None:
            missing.append((f"{youtube_id}_{start:06d}_{end:06d}", "not on disk"))
            continue
        label_name = row["label"].strip() or None
        membership = TRAIN if row["split"].strip().lower() == "train" else TEST
        entries[_relative(file, root)] = (classes.index(label_name) if label_name else -1, label_name, {"1": membership})
    return _build("kinetics400", root, classes, ["1"], entries, sorted(set(missing)))


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
    if kind == "ucf101":
        return _load_ucf101(root, annotations)
    if kind == "hmdb51":
        return _load_hmdb51(root, annotations)
    return _load_kinetics400(root, annotations)
