"""The ``ucf101`` format: videos under ROOT (``<Class>/v_<Class>_gXX_cYY.avi`` or flat).

Annotations in ``ROOT/ucfTrainTestlist`` (classInd.txt, trainlist0N.txt, testlist0N.txt);
splits "1".."3".  A list entry matches a file by name, else by stem when exactly one file has
it (videos re-encoded to another container).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from comode.extract.annotations import AnnotationFiles
from comode.extract.datasets.index import (
    TEST,
    TRAIN,
    DatasetError,
    DatasetIndex,
    FileMatcher,
    annotation_dir,
    build_index,
    inside_root,
)

__all__ = ["load_ucf101"]


def load_ucf101(root: Path, annotations: Path | None) -> DatasetIndex:
    folder = annotation_dir(root, annotations, "ucfTrainTestlist")
    files = AnnotationFiles()
    class_file = folder / "classInd.txt"
    if not class_file.is_file():
        raise DatasetError(f"{class_file} not found: UCF101 needs classInd.txt ('1 ApplyEyeMakeup' per line)")
    classes = []
    for number, line in enumerate(files.lines(class_file), 1):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise DatasetError(f"{class_file}:{number}: expected '<index> <ClassName>', got {line!r}")
        classes.append(fields[1])
    matcher = FileMatcher(root)
    entries: dict[str, tuple[int, str | None, dict[str, str]]] = {}
    missing: list[tuple[str, str]] = []
    split_names = []
    for split in ("1", "2", "3"):
        lists = [(folder / f"trainlist0{split}.txt", TRAIN), (folder / f"testlist0{split}.txt", TEST)]
        # Split 1 is always expected; another split once either of its lists is there.
        if split != "1" and not any(path.is_file() for path, _ in lists):
            continue
        present = [(path, side) for path, side in lists if files.expect(path, f"the {side} side of split {split}")]
        if present:
            split_names.append(split)
        for path, membership in present:
            for line in files.lines(path):
                entry = line.split()[0]
                if inside_root(entry) is None:
                    missing.append((entry, "outside dataset root"))
                    continue
                source, why = matcher.find(PurePosixPath(entry).name)
                if source is None:
                    missing.append((entry, why))
                    continue
                class_name = _ucf_class(PurePosixPath(source).name, classes)
                label = classes.index(class_name) if class_name else -1
                entries.setdefault(source, (label, class_name, {}))[2][split] = membership
    return build_index(
        "ucf101", root, classes, split_names, entries, missing, annotations=files, unlisted=matcher.unlisted()
    )


def _ucf_class(file_name: str, classes: list[str]) -> str | None:
    """'v_ApplyEyeMakeup_g08_c01.avi' -> 'ApplyEyeMakeup' (case-insensitive, as in the lists)."""
    match = re.match(r"v_(.+)_g\d+_c\d+", file_name)
    if not match:
        return None
    lowered = {c.lower(): c for c in classes}
    return lowered.get(match.group(1).lower())
