"""The ``hmdb51`` format: videos ``ROOT/<class>/<name>.avi``.

Annotations ``<class>_test_split{1,2,3}.txt`` (id 1 = train, 2 = test, 0 = not in that split)
in ``ROOT/testTrainMulti_7030_splits``; classes sorted alphabetically (the usual convention):
the classes with split files and the official HMDB51 classes present as ``ROOT/<class>/``
folders of videos, so a class whose split files are absent keeps its index (and its absent
files are named).  Entries match files by name, else by stem, as for UCF101.
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

__all__ = ["HMDB51_CLASSES", "load_hmdb51"]

# The 51 classes of HMDB51 (its split files' names): a folder of videos with one of these
# names is a class even when its split files are absent, so no later class index shifts.
HMDB51_CLASSES = frozenset(
    """brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat
    fall_floor fencing flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour
    pullup punch push pushup ride_bike ride_horse run shake_hands shoot_ball shoot_bow shoot_gun
    sit situp smile smoke somersault stand swing_baseball sword sword_exercise talk throw turn
    walk wave""".split()
)


def load_hmdb51(root: Path, annotations: Path | None) -> DatasetIndex:
    folder = annotation_dir(root, annotations, "testTrainMulti_7030_splits")
    pattern = re.compile(r"^(?P<cls>.+)_test_split(?P<split>[123])\.txt$")
    split_files = [(m["cls"], m["split"], p) for p in sorted(folder.iterdir()) if (m := pattern.match(p.name))]
    if not split_files:
        raise DatasetError(f"no '<class>_test_split<N>.txt' files in {folder}")
    matcher = FileMatcher(root)
    class_folders = {
        f.parent.name for f in matcher.files if f.parent.parent == root and f.parent.name in HMDB51_CLASSES
    }
    classes = sorted({cls for cls, _, _ in split_files} | class_folders)
    split_names = sorted({split for _, split, _ in split_files})
    files = AnnotationFiles()
    for class_name in classes:  # every class has a file per split: name the absent ones
        for split in split_names:
            files.expect(folder / f"{class_name}_test_split{split}.txt", f"class {class_name} in split {split}")
    entries: dict[str, tuple[int, str | None, dict[str, str]]] = {}
    missing: list[tuple[str, str]] = []
    for class_name, split, path in split_files:
        for number, line in enumerate(files.lines(path), 1):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DatasetError(f"{path}:{number}: expected '<video file> <0|1|2>', got {line!r}")
            entry, code = fields
            if inside_root(entry) is None or len(PurePosixPath(entry).parts) != 1:
                missing.append((entry, "outside dataset root"))
                continue
            source, why = matcher.find(entry)
            if source is None:
                missing.append((entry, why))
                continue
            splits = entries.setdefault(source, (classes.index(class_name), class_name, {}))[2]
            if code != "0":
                splits[split] = TRAIN if code == "1" else TEST
    return build_index(
        "hmdb51", root, classes, split_names, entries, missing, annotations=files, unlisted=matcher.unlisted()
    )
