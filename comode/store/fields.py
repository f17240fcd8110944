"""The per-video attributes readers act on, type-checked where they are read.

Readers select and label videos by a few attributes (status, frames, splits, label,
labels).  A store from elsewhere may hold any JSON there: ``splits="1"`` made training and
evaluation stop with an AttributeError, ``label=1e30`` with an overflow deep in torch.  The
full JSON Schema check is ``store validate``'s (O(videos) schema validations); this is the
cheap check of the fields readers use, so that such a video is left out with its reason,
like a group whose metadata does not parse, instead of stopping the run.
"""

from __future__ import annotations

from typing import Any, Mapping

from comode.store import layout

__all__ = ["reading_problem"]

_SUBSETS = ("train", "test")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _label_problem(name: str, value: Any, classes: int | None) -> str | None:
    if not _is_int(value):
        return f"{name} is {value!r}, not an integer"
    if value < -1 or (classes is not None and value >= classes):
        return f"{name} is {value}, not a class index (-1 or 0 .. {(classes or 0) - 1})"
    return None


def reading_problem(attrs: Mapping[str, Any], *, classes: int, label_sets: Mapping[str, int]) -> str | None:
    """Why a video with ``attrs`` cannot be read (the first problem), or None.  ``classes``:
    the number of primary classes; ``label_sets``: the number of classes of each extra set."""
    status = attrs.get(layout.ATTR_STATUS, layout.STATUS_WRITING)
    if not isinstance(status, str):
        return f"status is {status!r}, not a string"
    frames = attrs.get(layout.ATTR_FRAMES)
    if status == layout.STATUS_COMPLETE and not (_is_int(frames) and frames >= 0):
        return f"frames is {frames!r}, not a count of frames"
    splits = attrs.get(layout.ATTR_SPLITS, {})
    if not isinstance(splits, Mapping) or any(subset not in _SUBSETS for subset in splits.values()):
        return f"splits is {splits!r}, not a mapping of split names to 'train' or 'test'"
    if layout.ATTR_LABEL in attrs:
        problem = _label_problem("label", attrs[layout.ATTR_LABEL], classes)
        if problem is not None:
            return problem
    labels = attrs.get(layout.ATTR_LABELS) or {}
    if not isinstance(labels, Mapping):
        return f"labels is {labels!r}, not a mapping of label sets to class indices"
    for name, value in labels.items():
        problem = _label_problem(f"labels/{name}", value, label_sets.get(name))
        if problem is not None:
            return problem
    return None
