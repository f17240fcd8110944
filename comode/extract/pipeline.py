"""The extraction run: plan (what is left to do), execute (any executor), summarise.

Resumable by construction: a video counts as done only when its group's status is
"complete" (written last), so a re-run skips complete videos, redoes anything partial
(``write_video`` replaces it) and, unless ``retry_failed``, leaves recorded failures alone.
What is complete comes from the store's index (:mod:`comode.store.index`), not from
reading every group: the run consolidates the index when it starts (building it from the
groups for a store that has none), every :data:`CONSOLIDATE_EVERY_S` seconds, and at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import av

from comode.extract.dataset_report import annotations_record, report_document
from comode.extract.datasets import DatasetIndex, VideoItem
from comode.extract.encode import ffmpeg_version
from comode.extract.executors import Executor
from comode.extract.relabel import plan_relabel, relabel
from comode.extract.settings import ExtractSettings
from comode.extract.video import VideoResult, extract_to_store, record_failure
from comode.store import STATUS_COMPLETE, STATUS_FAILED, create_or_open_root, layout
from comode.store.index import Listing, consolidate
from comode.store.root_files import write_root_file
from comode.store.scan import scan_video_groups
from comode.store.writer import StoreFullError, WritableStore, open_root_for_writing
from comode.version import __version__

if TYPE_CHECKING:
    import zarr

logger = logging.getLogger(__name__)

# How often a run merges the journals into the index snapshot (readers of a store being
# extracted then read at most this much of the journals besides the snapshot).
CONSOLIDATE_EVERY_S = 300.0


@dataclass(frozen=True)
class ExtractionPlan:
    todo: tuple["VideoItem", ...]
    already_complete: int
    already_failed: int


@dataclass
class ExtractionSummary:
    store: str
    executor: str
    total: int
    skipped_complete: int = 0
    skipped_failed: int = 0
    completed: int = 0
    frames: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video_id, reason)
    relabelled: int = 0  # groups given the labels of changed annotations (not re-extracted)
    orphans: list[str] = field(default_factory=list)  # groups of videos gone, labelled from other annotations

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def root_attributes(dataset: "DatasetIndex", settings: ExtractSettings) -> dict:
    return {
        layout.ATTR_SCHEMA: layout.SCHEMA,
        "schema_minor": layout.SCHEMA_MINOR,
        "created_by": f"comode {__version__}",
        layout.ATTR_DATASET: {
            "name": dataset.name,
            "root": str(dataset.root),
            layout.DATASET_CLASSES: list(dataset.classes),
            layout.DATASET_SPLIT_NAMES: list(dataset.split_names),
            "missing": len(dataset.missing),
            "unlisted": len(dataset.unlisted),
            # A dataset index built by hand (no annotation files read) has no fingerprint to record.
            **({layout.DATASET_ANNOTATIONS: annotations_record(dataset)} if dataset.fingerprint else {}),
            **(
                {layout.DATASET_LABEL_SETS: {name: list(names) for name, names in dataset.label_sets.items()}}
                if dataset.label_sets
                else {}
            ),
        },
        layout.ATTR_EXTRACTION: {
            **settings.store_attrs(),
            "mv_units_per_pixel": layout.MV_UNITS_PER_PIXEL,
            "mv_sign": "dst_minus_src",
            "tools": {
                "comode": __version__,
                "ffmpeg": ffmpeg_version(),
                "pyav": av.__version__,
                "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            },
        },
    }


def plan_extraction(listing: Listing, videos: Sequence["VideoItem"], *, retry_failed: bool = False) -> ExtractionPlan:
    """What is left to do, by the store's listing (a group whose metadata cannot be read has
    no status: it is redone, and replaced whole)."""
    statuses = {name: attrs.get(layout.ATTR_STATUS) for name, attrs in listing.videos.items()}
    todo, complete, failed = [], 0, 0
    for item in videos:
        status = statuses.get(item.video_id)
        if status == STATUS_COMPLETE:
            complete += 1
        elif status == STATUS_FAILED and not retry_failed:
            failed += 1
        else:
            todo.append(item)
    return ExtractionPlan(todo=tuple(todo), already_complete=complete, already_failed=failed)


class _IndexKeeper:
    """Consolidates a store's index now, every ``every`` seconds, and once more at the end."""

    def __init__(self, url: str, root: "zarr.Group", storage_options: dict | None, every: float) -> None:
        self.url, self.storage_options, self.every = url, storage_options, every
        self.scan = lambda: scan_video_groups(root[layout.VIDEOS_GROUP], storage_options)
        self.last = time.monotonic()

    def now(self) -> Listing:
        self.last = time.monotonic()
        return consolidate(self.url, scan=self.scan, storage_options=self.storage_options).listing

    def maybe(self) -> None:
        if time.monotonic() - self.last >= self.every:
            self.quietly()

    def quietly(self) -> None:
        """Consolidate; a failure (a full disk) is logged, not raised: the journals hold everything."""
        try:
            self.now()
        except Exception as error:  # noqa: BLE001 -- the run's own outcome matters more
            logger.warning(
                "could not write the index snapshot of %s (%s: %s); readers merge the journals instead",
                self.url,
                type(error).__name__,
                error,
            )


def run_extraction(
    dataset: "DatasetIndex",
    store_url: str,
    settings: ExtractSettings,
    executor: Executor,
    *,
    retry_failed: bool = False,
    limit: int | None = None,
    storage_options: dict | None = None,
    on_result: Callable[[VideoResult, ExtractionSummary], None] | None = None,
    on_plan: Callable[[ExtractionPlan], None] | None = None,
) -> ExtractionSummary:
    """Extract every video of ``dataset`` not yet complete in the store at ``store_url``."""
    root = create_or_open_root(
        store_url, root_attrs=root_attributes(dataset, settings), storage_options=storage_options
    )
    _write_report(store_url, dataset, storage_options)
    videos = dataset.videos[:limit] if limit else dataset.videos
    index = _IndexKeeper(store_url, root, storage_options, CONSOLIDATE_EVERY_S)
    listing = index.now()
    writable = open_root_for_writing(store_url, storage_options)  # where a crashed task's failure goes
    relabelled, orphans = _relabel(writable, listing, dataset)
    plan = plan_extraction(listing, videos, retry_failed=retry_failed)
    if on_plan:
        on_plan(plan)
    summary = ExtractionSummary(
        store=store_url,
        executor=executor.description,
        total=len(videos),
        skipped_complete=plan.already_complete,
        skipped_failed=plan.already_failed,
        relabelled=relabelled,
        orphans=orphans,
    )
    start = time.perf_counter()
    try:
        for item, result in executor.map_unordered(extract_to_store, plan.todo, settings, store_url, storage_options):
            result = _recorded(writable, item, result)
            _count(summary, result)
            summary.seconds = time.perf_counter() - start
            if on_result:
                on_result(result, summary)
            index.maybe()
    finally:
        index.quietly()
    summary.seconds = time.perf_counter() - start
    return summary


def _write_report(store_url: str, dataset: "DatasetIndex", storage_options: dict | None) -> None:
    """The store's ``dataset_report.json``; a failure (a full disk) is logged, not raised: the
    report is also in the run's log, and the videos matter more."""
    try:
        write_root_file(store_url, layout.DATASET_REPORT, report_document(dataset), storage_options)
    except OSError as error:
        logger.warning("could not write %s into %s: %s", layout.DATASET_REPORT, store_url, error)


def _relabel(store: WritableStore, listing: Listing, dataset: "DatasetIndex") -> tuple[int, list[str]]:
    """Give every complete or failed group the labels the annotations say now (see
    :mod:`comode.extract.relabel`): (groups relabelled, orphaned groups)."""
    plan = plan_relabel(listing.videos, dataset)
    if plan.todo:
        logger.info(
            "the annotations say other labels or splits for %d extracted videos than their groups: relabelling them "
            "(their pixels stay)",
            len(plan.todo),
        )
    done = relabel(store, plan.todo)
    if plan.orphans:
        logger.warning(
            "%d groups of videos no longer in the dataset keep labels from other annotations (store validate names "
            "them; delete those groups or restore their files): %s",
            len(plan.orphans),
            ", ".join(plan.orphans[:5]) + (" ..." if len(plan.orphans) > 5 else ""),
        )
    return len(done), plan.orphans


def _recorded(store: WritableStore, item: "VideoItem", result: VideoResult | BaseException) -> VideoResult:
    """A task's result; a task that died (worker killed, out of memory, ...) is recorded as failed here."""
    if isinstance(result, StoreFullError):
        raise result  # no space for the store: every further write would fail too
    if not isinstance(result, BaseException):
        return result
    name, detail = type(result).__name__, str(result)
    if name == "KilledWorker":  # dask's text is a paragraph: say what it means here
        detail = "the worker process died on every try (a crash in native code, or the worker's memory limit)"
    return record_failure(store, item, f"task crashed: {name}: {detail}"[:500])


def _count(summary: ExtractionSummary, result: VideoResult) -> None:
    if result.already_complete:  # another run into the same store completed it first
        summary.skipped_complete += 1
    elif result.status == STATUS_COMPLETE:
        summary.completed += 1
        summary.frames += result.frames
    else:
        summary.failures.append((result.video_id, result.error or "unknown"))
