"""The ``sample`` format: what ``comode sample`` writes (:mod:`comode.sampleset`).

Videos anywhere under ROOT (``train|test/<motion>/<video>.mp4``, so ``folder`` reads it too)
and ``ROOT/labels.csv`` (``path,split,<label set>,...``: every column after ``split`` is a
label set, e.g. ``motion,scene``).  The first label set is the primary ``label``/``classes``;
the CSV's ``split`` (train/test) defines split "1"; every video also gets ``labels`` {set:
index into ``label_sets[set]``, whose names are sorted} and ``label_names``.  Rows without a
file are reported as missing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from comode.extract.annotations import AnnotationFiles
from comode.extract.datasets.index import (
    TEST,
    TRAIN,
    DatasetError,
    DatasetIndex,
    build_index,
    inside_root,
    relative_path,
    walk_videos,
)

__all__ = ["SAMPLE_LABELS_FILE", "load_sample", "write_sample_labels"]

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


def load_sample(root: Path, annotations: Path | None = None) -> DatasetIndex:
    """Index ROOT by its ``labels.csv`` (``annotations`` is not used: the file is always there)."""
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
