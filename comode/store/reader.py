"""Open a comode store and list its videos: the root description, splits, labels and listing.

Only videos whose status is "complete" are listed by default: a group that is still being
written (or whose writer was killed) has missing chunks that would read back as zeros.
The list comes from the store's index (:mod:`comode.store.index`: O(1) reads whatever the
store's size); a store without a usable index is listed by reading every group, with a
warning.  Opening a video (:meth:`Store.video`) reads its own group, so a video is never
read on the index's word alone; what a video holds is read by :class:`comode.store.video.Video`.
"""

from __future__ import annotations

import os
import posixpath
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Iterator, Sequence

import zarr

from comode.store import layout
from comode.store.containment import UnsafeStoreEntry, check_video_id, read_problem, tree_problems
from comode.store.fields import reading_problem
from comode.store.index.listing import Listing, list_videos
from comode.store.location import filesystem, is_plain_local, join, local_path
from comode.store.reach import reaching
from comode.store.scan import scan_video_groups
from comode.store.schema import check_root_attrs
from comode.store.video import Video

# Video: what Store.video returns (defined in comode.store.video).
__all__ = ["Store", "StoreError", "Video", "open_store"]


class StoreError(ValueError):
    """The path is not a usable comode store (message says why and what to do)."""


def open_store(url: str, *, storage_options: dict | None = None, validate: bool = True) -> "Store":
    """Open a store read-only, checking its schema name and major version first.

    ``storage_options`` (fsspec's) reach zarr-python only: a store opened with them reads its
    arrays through zarr-python too, since tensorstore takes its S3 settings from the AWS
    environment (docs/store.md, "Object stores (S3, MinIO, Ceph)").  A local store whose
    root or ``videos`` metadata is a FIFO or leads outside it is refused before zarr reads
    it (it would block or read there)."""
    if is_plain_local(url, storage_options):
        _check_local_metadata(local_path(url))
    try:
        with reaching(url, StoreError):  # no credentials, no server: one line, not a traceback
            root = zarr.open_group(url, mode="r", storage_options=storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError) as error:
        raise StoreError(
            f"{url}: no Zarr group here ({error.__class__.__name__}); extract one with `comode extract`"
        ) from None
    attrs = root.attrs.asdict()
    if validate:
        check_root_attrs(attrs, where=url)
    return Store(url=url, root=root, attrs=attrs, array_reads=not storage_options, storage_options=storage_options)


def _check_local_metadata(root: str) -> None:
    for relative in (layout.ZARR_JSON, f"{layout.VIDEOS_GROUP}/{layout.ZARR_JSON}"):
        problem = read_problem(root, os.path.join(root, relative))
        if problem is not None:
            raise StoreError(f"{root}: {relative} is {problem}; refusing to read this store")


@dataclass
class Store:
    """A comode store opened for reading."""

    url: str
    root: zarr.Group
    attrs: dict[str, Any]
    # The video listing as read by snapshot(); None = every listing call reads it anew.
    listing: Listing | None = field(default=None, repr=False)
    # Arrays through tensorstore (False: through zarr-python, see open_store).
    array_reads: bool = True
    storage_options: dict | None = field(default=None, repr=False)

    def snapshot(self) -> "Store":
        """This store with its video listing read once, for code that lists it several times.

        Every listing call (:meth:`video_attrs`, :meth:`video_ids`, iteration) of the
        returned store reuses one listing instead of reading the index again.  Videos that
        complete after the snapshot are not listed; per-video data is read as usual.
        """
        return replace(self, listing=self.read_listing())

    def read_listing(self) -> Listing:
        """The videos as listed now: from the index, or by reading every group when the index
        is missing or unusable (a log warning says so); see :mod:`comode.store.index`."""
        if self.listing is not None:
            return self.listing
        return list_videos(self.url, scan=self.scan_groups, storage_options=self.storage_options)

    def scan_groups(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """(attributes by id, unreadable reason by id) read from every group (O(videos) reads):
        what ``store validate`` and ``store reindex`` need; listings use the index."""
        return scan_video_groups(self._videos, self.storage_options)

    @property
    def dataset(self) -> dict[str, Any]:
        return self.attrs[layout.ATTR_DATASET]

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.get(layout.DATASET_CLASSES, []))

    @property
    def split_names(self) -> list[str]:
        return list(self.dataset.get(layout.DATASET_SPLIT_NAMES, []))

    @property
    def label_sets(self) -> dict[str, list[str]]:
        """Extra label sets, name -> class names (e.g. the sample set's ``motion`` and
        ``scene``); empty for stores with only the primary ``classes``."""
        return {name: list(names) for name, names in (self.dataset.get(layout.DATASET_LABEL_SETS) or {}).items()}

    def split(self, name: str) -> tuple[list[str], list[str]]:
        """(train ids, test ids) of the complete videos of split ``name``; ValueError naming
        the store's splits when it has no such split."""
        if name not in self.split_names:
            raise ValueError(f"store {self.url} has no split {name!r}; its splits: {self.split_names or 'none'}")
        attrs = self.video_attrs()  # one listing for both sides
        return _select(attrs, split=name, subset="train"), _select(attrs, split=name, subset="test")

    def label_classes(self, label_set: str | None = None) -> list[str]:
        """Class names of ``label_set`` (None: the primary labels, :attr:`classes`); ValueError
        naming the store's label sets when it has no such set."""
        if label_set is None:
            return self.classes
        if label_set not in self.label_sets:
            raise ValueError(
                f"store {self.url} has no label set {label_set!r}; its label sets: "
                f"{sorted(self.label_sets) or 'none (only the primary labels)'}"
            )
        return self.label_sets[label_set]

    def labels(self, video_ids: Sequence[str], label_set: str | None = None) -> list[int]:
        """The label of each of ``video_ids`` in ``label_set`` (None: the primary labels), an
        index into :meth:`label_classes`; -1 for a video without one.  From one listing; a
        KeyError for a video the store does not list, a ValueError for an unknown label set."""
        self.label_classes(label_set)  # the error naming the store's label sets
        attrs = self.video_attrs()
        labels = []
        for video_id in video_ids:
            if video_id not in attrs:
                raise KeyError(f"no video {video_id!r} in {self.url}")
            video = attrs[video_id]
            label = (
                video.get(layout.ATTR_LABEL)
                if label_set is None
                else (video.get(layout.ATTR_LABELS) or {}).get(label_set)
            )
            labels.append(-1 if label is None else int(label))
        return labels

    @property
    def extraction(self) -> dict[str, Any]:
        return self.attrs[layout.ATTR_EXTRACTION]

    @cached_property
    def _videos(self) -> zarr.Group:
        return self.root[layout.VIDEOS_GROUP]

    def video_attrs(self) -> dict[str, dict[str, Any]]:
        """Attributes of every readable video group, whatever its status, keyed by video id.

        From the index these are the attributes it carries (``INDEXED_ATTRS``: status,
        source, labels, splits, frames, error); ``video(id).attrs`` has all of a group's.
        A group whose metadata cannot be read (a damaged ``zarr.json``) is left out with a
        warning instead of stopping every reader: :meth:`scan_videos` says why, and
        ``comode store validate`` reports it by name."""
        attrs, unreadable = self.scan_videos()
        if unreadable:
            names = ", ".join(sorted(unreadable)[:5]) + (" ..." if len(unreadable) > 5 else "")
            warnings.warn(
                f"{self.url}: {len(unreadable)} video group(s) with unreadable metadata left out "
                f"({names}); `comode store validate` says why",
                stacklevel=2,
            )
        return attrs

    def scan_videos(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """(attributes by video id, reason by id for groups whose metadata cannot be read),
        as listed by :meth:`read_listing`.  A video whose attributes readers act on have the
        wrong type (:func:`~comode.store.fields.reading_problem`) is among the unreadable."""
        listing = self.read_listing()
        classes, label_sets = len(self.classes), {name: len(names) for name, names in self.label_sets.items()}
        videos, unreadable = {}, dict(listing.unreadable)
        for video, attrs in listing.videos.items():
            problem = reading_problem(attrs, classes=classes, label_sets=label_sets)
            if problem is None:
                videos[video] = attrs
            else:
                unreadable[video] = f"attributes of the wrong type: {problem}"
        return videos, unreadable

    def video_ids(
        self, *, status: str | None = layout.STATUS_COMPLETE, split: str | None = None, subset: str | None = None
    ) -> list[str]:
        """Sorted ids of videos with ``status`` (None: any), optionally in ``split`` as ``subset``."""
        return _select(self.video_attrs(), status=status, split=split, subset=subset)

    def video(self, video_id: str) -> "Video":
        """The group of ``video_id``.  In a local store, a group holding a link that leads
        outside the store or a non-regular file is refused (UnsafeStoreEntry, a ValueError:
        training skips and counts it like a damaged video) before anything of it is read."""
        check_video_id(video_id)
        if is_plain_local(self.url, self.storage_options):
            root = local_path(self.url)
            problems = tree_problems(root, os.path.join(root, layout.VIDEOS_GROUP, video_id))
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise UnsafeStoreEntry(f"video {video_id!r} refused: {problems[0]}{more}")
        try:
            group = self._videos[video_id]
        except KeyError:
            raise KeyError(f"no video {video_id!r} in {self.url}") from None
        url = join(self.url, layout.VIDEOS_GROUP, video_id) if self.array_reads else ""
        local = is_plain_local(self.url, self.storage_options)
        return Video(
            video_id=video_id,
            group=group,
            url=url,
            folder=os.path.join(local_path(self.url), layout.VIDEOS_GROUP, video_id) if local else None,
            list_objects=None if local else self._object_lister(video_id),
            extraction=self.extraction,
            rgb_limit=self._rgb_size(),
        )

    def _object_lister(self, video_id: str) -> Callable[[], dict[str, int]]:
        """For a remote store: a function that lists the objects of ``video_id``'s group,
        {path inside the group: bytes}, in one request (fsspec's recursive ``find``)."""

        def list_objects() -> dict[str, int]:
            fs, root = filesystem(self.url, self.storage_options)
            prefix = posixpath.join(root, layout.VIDEOS_GROUP, video_id)
            found = fs.find(prefix, detail=True)
            return {posixpath.relpath(path, prefix): int(info.get("size") or 0) for path, info in found.items()}

        return list_objects

    def _rgb_size(self) -> tuple[int, int] | None:
        """(width, height) of the store's RGB stream: no decoded frame may be larger."""
        size = tuple(self.extraction.get(key) for key in ("rgb_width", "rgb_height"))
        return size if all(isinstance(v, int) and v > 0 for v in size) else None  # type: ignore[return-value]

    def __iter__(self) -> Iterator["Video"]:
        for video_id in self.video_ids():
            yield self.video(video_id)


def _select(
    videos: dict[str, dict[str, Any]],
    *,
    status: str | None = layout.STATUS_COMPLETE,
    split: str | None = None,
    subset: str | None = None,
) -> list[str]:
    """Sorted ids of ``videos`` (attributes by id) with ``status`` (None: any), optionally in
    ``split`` as ``subset`` (:meth:`Store.video_ids`)."""
    ids = []
    for name, attrs in videos.items():
        if status is not None and attrs.get(layout.ATTR_STATUS) != status:
            continue
        if split is not None:
            membership = attrs.get(layout.ATTR_SPLITS, {}).get(split)
            if membership is None or (subset is not None and membership != subset):
                continue
        ids.append(name)
    return sorted(ids)
