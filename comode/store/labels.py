"""Do a store's video groups agree with its class lists and with the annotations its root
records?  (What ``store validate`` checks of labels; the labels themselves are written by
the extractor, and rewritten when the annotations change.)

A group's ``label`` indexes the root's ``dataset.classes`` and its ``class_name`` must be
that entry: a group left with its label from an older class list names another class.  Its
``splits`` must name splits of the root.  When the root records the fingerprint of its
annotations, every complete or failed group must carry the same: one that does not got its
labels and splits from other annotation files.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from comode.store import layout

__all__ = ["check_labels"]

_LABELLED = (layout.STATUS_COMPLETE, layout.STATUS_FAILED)
_RELABEL = "run the same extract command again to relabel it"


def check_labels(dataset: Mapping[str, Any], groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One problem per disagreeing group (``groups``: attributes by video id), every group named."""
    classes = list(dataset.get(layout.DATASET_CLASSES, []))
    label_sets = {name: list(names) for name, names in (dataset.get(layout.DATASET_LABEL_SETS) or {}).items()}
    split_names = set(dataset.get(layout.DATASET_SPLIT_NAMES, []))
    recorded = (dataset.get(layout.DATASET_ANNOTATIONS) or {}).get(layout.ANNOTATIONS_FINGERPRINT)
    problems = []
    for video_id, attrs in sorted(groups.items()):
        if attrs.get(layout.ATTR_STATUS) not in _LABELLED:
            continue
        found = list(_label_problems(attrs.get(layout.ATTR_LABEL, -1), attrs.get(layout.ATTR_CLASS_NAME), classes, ""))
        names = attrs.get(layout.ATTR_LABEL_NAMES) or {}
        for name, label in (attrs.get(layout.ATTR_LABELS) or {}).items():
            if name not in label_sets:
                found.append(f"label set {name!r} is not in the root's dataset.label_sets")
            else:
                found.extend(_label_problems(label, names.get(name), label_sets[name], f"label set {name!r}: "))
        unknown = sorted(set(attrs.get(layout.ATTR_SPLITS) or {}) - split_names)
        if unknown:
            found.append(f"splits {unknown} are not among the store's splits {sorted(split_names)}")
        if recorded and attrs.get(layout.ATTR_ANNOTATIONS) != recorded:
            found.append(
                f"labels and splits come from other annotations ({attrs.get(layout.ATTR_ANNOTATIONS) or 'unrecorded'}, "
                f"the store's are {recorded})"
            )
        problems.extend(f"videos/{video_id}: {problem}; {_RELABEL}" for problem in found)
    return problems


def _label_problems(label: Any, class_name: Any, classes: list[str], where: str) -> Iterable[str]:
    if not isinstance(label, int) or label < -1 or label >= len(classes):
        yield f"{where}label {label!r} is outside the store's {len(classes)} classes"
    elif label == -1 and class_name is not None:
        yield f"{where}unlabelled (-1) but class_name is {class_name!r}"
    elif label >= 0 and classes[label] != class_name:
        yield f"{where}label {label} is {classes[label]!r} in the store's classes, but class_name says {class_name!r}"
