"""The annotated benchmark formats of :func:`comode.extract.datasets.load_dataset`:
``ucf101``, ``hmdb51`` and ``kinetics400`` (their layouts and split rules are in that
module's docstring).  Each turns the benchmark's annotation files into a
:class:`~comode.extract.datasets.DatasetIndex`, refusing entries that point outside ROOT.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath

from comode.extract.datasets import (
    TEST,
    TRAIN,
    DatasetError,
    DatasetIndex,
    build_index,
    inside_root,
    read_lines,
    relative_path,
    walk_videos,
)

__all__ = ["load_ucf101", "load_hmdb51", "load_kinetics400"]


def _annotation_dir(root: Path, annotations: Path | None, default: str) -> Path:
    directory = Path(annotations) if annotations else root / default
    if not directory.is_dir():
        raise DatasetError(
            f"annotation folder {directory} not found (expected {default}/ under the dataset root, "
            "or pass --annotations)"
        )
    return directory


def _files_by_name(root: Path) -> dict[str, Path]:
    return {path.name: path for path in walk_videos(root)}


def load_ucf101(root: Path, annotations: Path | None) -> DatasetIndex:
    folder = _annotation_dir(root, annotations, "ucfTrainTestlist")
    class_file = folder / "classInd.txt"
    if not class_file.is_file():
        raise DatasetError(f"{class_file} not found: UCF101 needs classInd.txt ('1 ApplyEyeMakeup' per line)")
    classes = []
    for number, line in enumerate(read_lines(class_file), 1):
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
            for line in read_lines(path) if path.is_file() else []:
                entry = line.split()[0]
                if inside_root(entry) is None:
                    missing.append((entry, "outside dataset root"))
                elif (file := on_disk.get(PurePosixPath(entry).name)) is None:
                    missing.append((entry, "not on disk"))
                else:
                    memberships.setdefault(relative_path(file, root), {})[split] = membership
    entries = {}
    for name, file in on_disk.items():
        source = relative_path(file, root)
        class_name = _ucf_class(name, classes)
        entries[source] = (classes.index(class_name) if class_name else -1, class_name, memberships.get(source, {}))
    return build_index("ucf101", root, classes, split_names, entries, sorted(set(missing)))


def _ucf_class(file_name: str, classes: list[str]) -> str | None:
    """'v_ApplyEyeMakeup_g08_c01.avi' -> 'ApplyEyeMakeup' (case-insensitive, as in the lists)."""
    match = re.match(r"v_(.+)_g\d+_c\d+", file_name)
    if not match:
        return None
    lowered = {c.lower(): c for c in classes}
    return lowered.get(match.group(1).lower())


def load_hmdb51(root: Path, annotations: Path | None) -> DatasetIndex:
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
        for number, line in enumerate(read_lines(path), 1):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DatasetError(f"{path}:{number}: expected '<video file> <0|1|2>', got {line!r}")
            entry, code = fields
            if inside_root(entry) is None or len(PurePosixPath(entry).parts) != 1:
                missing.append((entry, "outside dataset root"))
                continue
            file = on_disk.get(entry)
            if file is None:
                missing.append((entry, "not on disk"))
                continue
            source = relative_path(file, root)
            labels[source] = class_name
            if code != "0":
                memberships.setdefault(source, {})[split] = TRAIN if code == "1" else TEST
    entries = {}
    for file in on_disk.values():
        source = relative_path(file, root)
        class_name = labels.get(source) or (file.parent.name if file.parent.name in classes else None)
        entries[source] = (classes.index(class_name) if class_name else -1, class_name, memberships.get(source, {}))
    split_names = sorted({split for _, split, _ in split_files})
    return build_index("hmdb51", root, classes, split_names, entries, sorted(set(missing)))


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
        raise DatasetError(
            f"no Kinetics annotation CSV found (looked in {annotations or root / 'annotations'} and "
            f"{root}); expected columns {','.join(_KINETICS_COLUMNS)}"
        )
    return files


def load_kinetics400(root: Path, annotations: Path | None) -> DatasetIndex:
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
    for file in walk_videos(root):
        by_stem.setdefault(file.stem, file)
    entries, missing = {}, []
    for row in rows:
        youtube_id = row["youtube_id"].strip()
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            missing.append((youtube_id, f"bad time_start/time_end {row['time_start']!r}/{row['time_end']!r}"))
            continue
        if inside_root(youtube_id) is None or "/" in youtube_id:
            missing.append((youtube_id, "outside dataset root"))
            continue
        file = by_stem.get(f"{youtube_id}_{start:06d}_{end:06d}") or by_stem.get(youtube_id)
        if file is None:
            missing.append((f"{youtube_id}_{start:06d}_{end:06d}", "not on disk"))
            continue
        label_name = row["label"].strip() or None
        membership = TRAIN if row["split"].strip().lower() == "train" else TEST
        entries[relative_path(file, root)] = (
            classes.index(label_name) if label_name else -1,
            label_name,
            {"1": membership},
        )
    return build_index("kinetics400", root, classes, ["1"], entries, sorted(set(missing)))
