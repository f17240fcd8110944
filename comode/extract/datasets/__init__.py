"""Dataset readers: a dataset on disk -> videos with labels and split membership.

Formats (``load_dataset(kind, root)``), one module each, registered in :data:`READERS` (each
module's docstring has its layout and split rules); what they share is in
:mod:`~comode.extract.datasets.index`:

* ``folder`` (:mod:`~comode.extract.datasets.folder`): ``ROOT/<class>/<...>/<video>``; split
  "1" from ``train/`` and ``test/`` (or ``val/``) folders, else a stable hash of the video id.
* ``ucf101`` (:mod:`~comode.extract.datasets.ucf101`): the lists of ``ROOT/ucfTrainTestlist``;
  splits "1".."3".
* ``hmdb51`` (:mod:`~comode.extract.datasets.hmdb51`): the split files of
  ``ROOT/testTrainMulti_7030_splits``; splits "1".."3".
* ``kinetics400`` (:mod:`~comode.extract.datasets.kinetics400`): CSV annotations in
  ``ROOT/annotations`` or ROOT; split "1" train vs validation, "test" train vs test.
* ``sample`` (:mod:`~comode.extract.datasets.sample`): what ``comode sample`` writes, the
  videos and ``ROOT/labels.csv`` (several label sets).

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

import os
from pathlib import Path
from typing import Callable, Mapping

from comode.extract.datasets.folder import load_folder
from comode.extract.datasets.hmdb51 import load_hmdb51
from comode.extract.datasets.index import (
    TEST,
    TRAIN,
    VIDEO_EXTENSIONS,
    DatasetError,
    DatasetIndex,
    VideoItem,
    build_index,
    inside_root,
    safe_video_id,
    walk_videos,
)
from comode.extract.datasets.kinetics400 import load_kinetics400
from comode.extract.datasets.sample import SAMPLE_LABELS_FILE, load_sample, write_sample_labels
from comode.extract.datasets.ucf101 import load_ucf101

__all__ = [
    "DATASET_KINDS",
    "READERS",
    "SAMPLE_LABELS_FILE",
    "TEST",
    "TRAIN",
    "VIDEO_EXTENSIONS",
    "DatasetError",
    "DatasetIndex",
    "VideoItem",
    "build_index",
    "inside_root",
    "load_dataset",
    "safe_video_id",
    "walk_videos",
    "write_sample_labels",
]

# Format name -> its reader: (absolute dataset root, annotation file or folder or None) -> index.
READERS: Mapping[str, Callable[[Path, Path | None], DatasetIndex]] = {
    "folder": load_folder,
    "ucf101": load_ucf101,
    "hmdb51": load_hmdb51,
    "kinetics400": load_kinetics400,
    "sample": load_sample,
}
DATASET_KINDS = tuple(READERS)


def load_dataset(kind: str, root: str | Path, *, annotations: str | Path | None = None) -> DatasetIndex:
    """Index the dataset of format ``kind`` under ``root``."""
    if kind not in READERS:
        raise DatasetError(f"unknown dataset format {kind!r}; choose one of {', '.join(DATASET_KINDS)}")
    root = Path(os.path.normpath(Path(root).expanduser().absolute()))  # no "x/../" in recorded paths
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder")
    return READERS[kind](root, Path(annotations).expanduser() if annotations else None)
