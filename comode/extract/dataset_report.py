"""The dataset report: everything the dataset adapter did not take as annotated, by name.

A store whose labels are wrong or whose splits are partial looks like any other store, so
nothing is dropped without a word: every annotated video without a file (and why), every
video on disk that no annotation names (extracted unlabelled, in no split), every annotation
file or row set aside, every expected annotation file that is absent.  Three places:

- the console: counts and the first few names (:func:`log_report`);
- the run's log (``<store>.log``): every name (:data:`comode.logs.DETAIL_LOGGER` records);
- ``dataset_report.json`` in the store (:func:`report_document`), which ``store info``
  summarises; its format is in ``schemas/README.md``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from comode.extract.datasets import DatasetIndex
from comode.logs import DETAIL_LOGGER
from comode.store import layout

__all__ = ["report_document", "annotations_record", "log_report", "SHOWN_NAMES", "UNLISTED_RULE"]

logger = logging.getLogger("comode.extract.dataset")
detail = logging.getLogger(f"{DETAIL_LOGGER}.dataset")

SHOWN_NAMES = 5  # names per list on the console
UNLISTED_RULE = "extracted unlabelled (label -1), in no split"


def annotations_record(dataset: "DatasetIndex") -> dict[str, Any]:
    """The root's ``dataset.annotations``: the fingerprint and the files it covers."""
    return {
        layout.ANNOTATIONS_FINGERPRINT: dataset.fingerprint,
        "files": [{"path": path, "sha256": digest} for path, digest in dataset.annotation_files.items()],
    }


def _lists(dataset: "DatasetIndex") -> dict[str, list[dict[str, str]]]:
    return {
        "missing": [{"entry": entry, "reason": reason} for entry, reason in dataset.missing],
        "unlisted": [{"source": source, "rule": UNLISTED_RULE} for source in dataset.unlisted],
        "skipped": [{"what": what, "reason": reason} for what, reason in dataset.skipped],
        "incomplete": [{"file": file, "purpose": purpose} for file, purpose in dataset.incomplete],
    }


def report_document(dataset: "DatasetIndex") -> dict[str, Any]:
    """The content of ``dataset_report.json``."""
    sizes: dict[str, dict[str, int]] = {name: {"train": 0, "test": 0} for name in dataset.split_names}
    for video in dataset.videos:
        for name, side in video.splits.items():
            sizes.setdefault(name, {"train": 0, "test": 0})[side] += 1
    return {
        "format": layout.DATASET_REPORT_FORMAT,
        "dataset": dataset.name,
        "root": str(dataset.root),
        "annotations": annotations_record(dataset),
        "videos": len(dataset.videos),
        "classes": len(dataset.classes),
        "splits": sizes,
        "unlisted_rule": UNLISTED_RULE,
        **_lists(dataset),
    }


# What each list is, for people: (title, how one item reads).
_TITLES = {
    "missing": "annotated but not extracted",
    "unlisted": f"on disk but in no annotation ({UNLISTED_RULE})",
    "skipped": "annotation files or rows not used",
    "incomplete": "expected annotation files absent",
}


def _line(kind: str, item: dict[str, str]) -> str:
    if kind == "unlisted":
        return item["source"]
    values = list(item.values())
    return f"{values[0]} ({values[1]})"


def log_report(dataset: "DatasetIndex", *, where: str) -> None:
    """The report on the console (counts, first names) and in the run's log (every name);
    ``where``: where the whole lists are, for the console's "... and N more"."""
    files = list(dataset.annotation_files)
    read = ", ".join(files) if len(files) <= SHOWN_NAMES else f"{len(files)} files in {os.path.commonpath(files)}"
    logger.info(
        "%s: %d videos, %d classes, splits %s; annotations %s read from %s",
        dataset.name,
        len(dataset.videos),
        len(dataset.classes),
        list(dataset.split_names),
        dataset.fingerprint[:19],
        read or "the folder layout (no annotation files)",
    )
    for path, digest in dataset.annotation_files.items():
        detail.info("%s annotation file: %s sha256 %s", dataset.name, path, digest)
    for kind, items in _lists(dataset).items():
        if not items:
            continue
        lines = [_line(kind, item) for item in items]
        shown = "; ".join(lines[:SHOWN_NAMES])
        more = f"; ... and {len(lines) - SHOWN_NAMES} more ({where})" if len(lines) > SHOWN_NAMES else ""
        logger.warning("%s: %d %s: %s%s", dataset.name, len(lines), _TITLES[kind], shown, more)
        for line in lines:
            detail.warning("%s %s: %s", dataset.name, kind, line)
