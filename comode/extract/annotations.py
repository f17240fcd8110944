"""What a dataset's labels and splits were derived from: the annotation files read (with
their digests), the expected ones that were absent, and the files and rows set aside.

Labels and splits are derived data: the same videos relabelled from other annotation files
get other labels.  A loader reads every annotation file through :class:`AnnotationFiles`,
so the store can record exactly what its labels came from (:func:`fingerprint`, kept in the
store's root and in every video group) and a later run can tell that they changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["AnnotationFiles", "DatasetError", "fingerprint"]


class DatasetError(ValueError):
    """The dataset cannot be indexed; the message says which file and what is expected."""


@dataclass
class AnnotationFiles:
    """The annotation files one loader read, and what it found missing or set aside.

    read: path -> sha256 of the bytes, in reading order.
    absent: (expected file, what it is for): the expected annotation files that do not
        exist (a split whose other list exists, a class without its split file).
    skipped: (file or row, reason): annotation files not read and rows not used.
    """

    read: dict[str, str] = field(default_factory=dict)
    absent: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def text(self, path: Path) -> str:
        """The file's text (BOM removed), recorded with its digest."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise DatasetError(f"cannot read annotation file {path}: {error.strerror}") from None
        self.read[str(path)] = hashlib.sha256(data).hexdigest()
        return data.decode("utf-8-sig", errors="replace")

    def lines(self, path: Path) -> list[str]:
        """The file's non-empty lines, stripped (CRLF, tabs and a BOM are fine)."""
        return [line.strip() for line in self.text(path).splitlines() if line.strip()]

    def expect(self, path: Path, purpose: str) -> bool:
        """Whether ``path`` exists; if not, it is recorded as absent (``purpose``: what it is for)."""
        if Path(path).is_file():
            return True
        self.absent.append((str(path), purpose))
        return False

    def skip(self, what: str, reason: str) -> None:
        self.skipped.append((what, reason))


def fingerprint(
    dataset: str,
    files: Mapping[str, str],
    classes: Iterable[str],
    split_names: Iterable[str],
    label_sets: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """One digest of everything labels and splits are derived from: the format, the content
    of each annotation file (by file name, so moving the files elsewhere changes nothing),
    the class list and the split names.  ``sha256:<hex>``."""
    document = {
        "dataset": dataset,
        "files": sorted((Path(path).name, digest) for path, digest in files.items()),
        "classes": list(classes),
        "split_names": list(split_names),
        "label_sets": {name: list(names) for name, names in sorted((label_sets or {}).items())},
    }
    body = json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest()
