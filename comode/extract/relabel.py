"""Labels are derived data: when the annotations change, the store's labels follow.

Every video group carries the labels and splits its dataset adapter gave it, and the
fingerprint of the annotations they came from (:func:`label_attrs`).  A run compares what
the store's index says of every complete or failed group with what the annotations say
now, and rewrites the label attributes of each group that differs, without re-extracting
(:func:`comode.store.writer.relabel_video`): a restored HMDB51 split file or a corrected
UCF101 list makes every group agree with the new class list, never half of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from comode.extract.datasets import DatasetIndex, VideoItem
from comode.store import layout
from comode.store.writer import WritableStore, relabel_video

__all__ = ["label_attrs", "RelabelPlan", "plan_relabel", "relabel"]

_LABELLED = (layout.STATUS_COMPLETE, layout.STATUS_FAILED)


def label_attrs(item: "VideoItem") -> dict[str, Any]:
    """The attributes of a video group derived from the annotations (``layout.LABEL_ATTRS``)."""
    attrs: dict[str, Any] = {
        layout.ATTR_LABEL: item.label,
        layout.ATTR_CLASS_NAME: item.class_name,
        layout.ATTR_SPLITS: dict(item.splits),
    }
    if item.labels:  # extra label sets (dataset format "sample"): indices into root dataset.label_sets
        attrs.update({layout.ATTR_LABELS: dict(item.labels), layout.ATTR_LABEL_NAMES: dict(item.label_names)})
    if item.annotations:
        attrs[layout.ATTR_ANNOTATIONS] = item.annotations
    return attrs


@dataclass
class RelabelPlan:
    """todo: the dataset's videos whose groups say other labels than the annotations now;
    orphans: groups of videos no longer in the dataset whose labels came from other annotations
    (left alone: nothing says what they should be)."""

    todo: list["VideoItem"] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def plan_relabel(listed: Mapping[str, Mapping[str, Any]], dataset: "DatasetIndex") -> RelabelPlan:
    """Compare the groups as listed (attributes by video id) with ``dataset``; O(videos) in memory."""
    items = {item.video_id: item for item in dataset.videos}
    plan = RelabelPlan()
    for video_id, attrs in sorted(listed.items()):
        if attrs.get(layout.ATTR_STATUS) not in _LABELLED:
            continue
        item = items.get(video_id)
        if item is None:
            if attrs.get(layout.ATTR_ANNOTATIONS) != dataset.fingerprint:
                plan.orphans.append(video_id)
        elif {key: attrs[key] for key in layout.LABEL_ATTRS if key in attrs} != label_attrs(item):
            plan.todo.append(item)
    return plan


def relabel(store: WritableStore, items: list["VideoItem"]) -> list[str]:
    """Rewrite the label attributes of each of ``items``' groups; the ids of those rewritten."""
    return [item.video_id for item in items if relabel_video(store, item.video_id, label_attrs(item))]
