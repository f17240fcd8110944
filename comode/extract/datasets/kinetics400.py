"""The ``kinetics400`` format: which CSVs are read, which rows count, which file each names.

CSVs: every ``*.csv`` of ``--annotations`` (a folder or one file), else of
``ROOT/annotations``, else of ROOT.  Files named for another Kinetics version
(``kinetics-600_train.csv``, ``kinetics700_val.csv``, ``k600_test.csv``: the ActivityNet
crawler's ``data/`` folder holds them side by side) are skipped and named: ``--dataset
kinetics400`` reads Kinetics-400 files only.

Columns: ``youtube_id,time_start,time_end`` are required; ``label`` may be absent or empty
(the crawler's ``kinetics-400_test.csv`` has none: its rows are unlabelled test videos);
``split`` may be absent when the file name says it (``train``, ``val``/``validate``, ``test``).

Times: seconds (``10``, ``10.0``) or ``m:ss`` / ``h:mm:ss`` (``1:44``), truncated to whole
seconds.  Files, anywhere under ROOT: ``<id>_<start>_<end>.<ext>`` with the times zero-padded
to 6 digits (the official downloader), unpadded (``<id>_9_19``) or with decimals
(``<id>_61.0_71.0``), or ``<id>.<ext>``.

Splits, the CSV's own split kept apart: ``1`` is train vs validation (the usual protocol, and
what ``evaluate`` uses by default); ``test`` is train vs the test CSV, present when there is
one.  A train CSV and a validation CSV are expected; an absent one is named.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from comode.extract.annotations import AnnotationFiles
from comode.extract.datasets.index import TEST, TRAIN, DatasetError, DatasetIndex, build_index, inside_root, walk_videos

__all__ = ["load_kinetics400", "parse_time"]

REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")
# The CSVs' own split values -> the split they belong to.
_ROW_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Store splits: name -> {CSV split: membership}.
SPLITS = {"1": {"train": TRAIN, "val": TEST}, "test": {"train": TRAIN, "test": TEST}}
_OTHER_VERSION = re.compile(r"(?:kinetics|(?<![a-z])k)[-_ ]?(600|700)", re.IGNORECASE)
_SPLIT_IN_NAME = re.compile(r"(train|validate|validation|val|test)", re.IGNORECASE)
_TIMED_STEM = re.compile(r"^(?P<id>.+)_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")


def parse_time(text: str) -> int:
    """Whole seconds of ``10``, ``10.5``, ``1:44`` or ``0:01:44``; ValueError otherwise."""
    parts = text.strip().split(":")
    if len(parts) > 3 or not all(parts):
        raise ValueError(text)
    seconds = sum(float(part) * 60**power for power, part in enumerate(reversed(parts)))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(text)
    return int(seconds)


def _csv_files(root: Path, annotations: Path | None, files: AnnotationFiles) -> list[Path]:
    if annotations:
        target = Path(annotations)
        found = sorted(target.glob("*.csv")) if target.is_dir() else [target]
    else:
        found = sorted((root / "annotations").glob("*.csv")) or sorted(root.glob("*.csv"))
    found = [f for f in found if f.is_file()]
    chosen = []
    for path in found:
        if _OTHER_VERSION.search(path.name):
            files.skip(str(path), "another Kinetics version: --dataset kinetics400 reads Kinetics-400 files only")
        else:
            chosen.append(path)
    if not chosen:
        raise DatasetError(
            f"no Kinetics-400 annotation CSV found (looked in {annotations or root / 'annotations'} and {root}"
            + (f"; skipped {', '.join(p.name for p in found)}: another Kinetics version" if found else "")
            + f"); expected columns {','.join(REQUIRED_COLUMNS)}[,label][,split]"
        )
    return chosen


def _rows(path: Path, files: AnnotationFiles) -> list[tuple[str, dict[str, str]]]:
    """(``file:line``, row with a ``split`` of train/val/test) of one CSV."""
    reader = csv.DictReader(io.StringIO(files.text(path), newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    absent = [c for c in REQUIRED_COLUMNS if c not in columns]
    named = _SPLIT_IN_NAME.search(path.stem)
    if absent or ("split" not in columns and named is None):
        raise DatasetError(
            f"{path}: missing columns {absent or ['split']}; expected a header with {','.join(REQUIRED_COLUMNS)}, "
            "optionally label, and split (or a file name saying train, val or test)"
        )
    rows = []
    for number, row in enumerate(reader, 2):
        value = (row.get("split") or (named.group(1) if named else "")).strip().lower()
        if value not in _ROW_SPLITS:
            files.skip(f"{path}:{number}", f"split {value!r} is none of train, val(idate), test")
            continue
        rows.append((f"{path.name}:{number}", {**row, "split": _ROW_SPLITS[value]}))
    return rows


class _Files:
    """The videos under ROOT by every name a row may give them."""

    def __init__(self, root: Path) -> None:
        self.root, self.by_stem, self.by_time = root, {}, {}
        self.files = walk_videos(root)
        for file in self.files:
            self.by_stem.setdefault(file.stem, file)
            if match := _TIMED_STEM.match(file.stem):
                key = (match["id"], int(float(match["start"])), int(float(match["end"])))
                self.by_time.setdefault(key, file)

    def find(self, youtube_id: str, start: int, end: int) -> Path | None:
        return (
            self.by_stem.get(f"{youtube_id}_{start:06d}_{end:06d}")
            or self.by_time.get((youtube_id, start, end))
            or self.by_stem.get(youtube_id)
        )

    def sources(self) -> set[str]:
        return {file.relative_to(self.root).as_posix() for file in self.files}


def load_kinetics400(root: Path, annotations: Path | None) -> DatasetIndex:
    files = AnnotationFiles()
    rows = [row for path in _csv_files(root, annotations, files) for row in _rows(path, files)]
    classes = sorted({(row.get("label") or "").strip() for _, row in rows} - {""})
    class_index = {name: number for number, name in enumerate(classes)}
    present = {row["split"] for _, row in rows}
    where = annotations or root / "annotations"
    if "train" not in present:
        files.absent.append((f"{where}/train.csv", "the train side of every split: no row says train"))
    if "val" not in present:
        files.absent.append((f"{where}/validate.csv (or val.csv)", "the test side of split 1: no validation row"))
    split_names = ["1"] + (["test"] if "test" in present else [])  # split 1 always: absent sides are named
    on_disk = _Files(root)
    entries: dict[str, tuple[int, str | None, dict[str, str]]] = {}
    named_by: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for where_row, row in rows:
        youtube_id = (row.get("youtube_id") or "").strip()
        try:
            start, end = parse_time(row["time_start"] or ""), parse_time(row["time_end"] or "")
        except ValueError:
            missing.append((youtube_id, f"bad time_start/time_end {row['time_start']!r}/{row['time_end']!r}"))
            continue
        if inside_root(youtube_id) is None or "/" in youtube_id:
            missing.append((youtube_id, "outside dataset root"))
            continue
        file = on_disk.find(youtube_id, start, end)
        if file is None:
            missing.append((f"{youtube_id}_{start:06d}_{end:06d}", "not on disk"))
            continue
        source = file.relative_to(root).as_posix()
        label_name = (row.get("label") or "").strip() or None
        entry = (
            class_index[label_name] if label_name else -1,
            label_name,
            {
                name: sides[row["split"]]
                for name, sides in SPLITS.items()
                if name in split_names and row["split"] in sides
            },
        )
        if source in entries:
            if entries[source] != entry:
                files.skip(where_row, f"names {source} again, with another label or split than {named_by[source]}")
            continue
        entries[source], named_by[source] = entry, where_row
    unlisted = sorted(on_disk.sources() - set(entries))
    return build_index(
        "kinetics400", root, classes, split_names, entries, missing, annotations=files, unlisted=unlisted
    )
