"""The annotated benchmark formats of :func:`comode.extract.datasets.load_dataset`:
``ucf101`` and ``hmdb51`` here, ``kinetics400`` in :mod:`comode.extract.kinetics` (their
layouts and split rules are in the ``datasets`` module's docstring).  Each turns the
benchmark's annotation files into a :class:`~comode.extract.datasets.DatasetIndex`, refusing
entries that point outside ROOT, naming every entry without a file, every file no entry
names, and every expected annotation file that is absent.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from comode.extract.annotations import AnnotationFiles
from comode.extract.datasets import (
    TEST,
    TRAIN,
    DatasetError,
    DatasetIndex,
    build_index,
    inside_root,
    relative_path,
    walk_videos,
)
from comode.extract.kinetics import load_kinetics400

__all__ = ["load_ucf101", "load_hmdb51", "load_kinetics400", "FileMatcher", "annotation_dir"]

# The 51 classes of HMDB51 (its split files' names): a folder of videos with one of these
# names is a class even when its split files are absent, so no later class index shifts.
HMDB51_CLASSES = frozenset(
    """brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat
    fall_floor fencing flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour
    pullup punch push pushup ride_bike ride_horse run shake_hands shoot_ball shoot_bow shoot_gun
    sit situp smile smoke somersault stand swing_baseball sword sword_exercise talk throw turn
    walk wave""".split()
)


def annotation_dir(root: Path, annotations: Path | None, default: str) -> Path:
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
