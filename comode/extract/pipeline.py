"""The extraction run: plan (what is left to do), execute (any executor), summarise.

Resumable by construction: a video counts as done only when its group's status is
"complete" (written last), so a re-run skips complete videos, redoes anything partial
(``write_video`` replaces it) and, unless ``retry_failed``, leaves recorded failures alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import zarr

from comode import __version__
from comode.extract.encode import ffmpeg_version
from comode.extract.executors import Executor
from comode.extract.settings import ExtractSettings
from comode.extract.video import VideoResult, extract_to_store, record_failure
from comode.store import STATUS_COMPLETE, STATUS_FAILED, create_or_open_root, layout
from comode.store.reader import scan_video_groups
from comode.store.writer import StoreFullError

if TYPE_CHECKING:
    from comode.extract.datasets import DatasetIndex, VideoItem


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

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def root_attributes(dataset: "DatasetIndex", settings: ExtractSettings) -> dict:
    import av

    return {
        "schema": layout.SCHEMA,
        "schema_minor": layout.SCHEMA_MINOR,
        "created_by": f"comode {__version__}",
        "dataset": {"name": dataset.name, "root": str(dataset.root), "classes": list(dataset.classes),
                    "split_names": list(dataset.split_names), "missing": len(dataset.missing),
                    **({"label_sets": {name: list(names) for name, names in dataset.label_sets.items()}}
                       if dataset.label_sets else {})},
        "extraction": {
            **settings.store_attrs(),
            "mv_units_per_pixel": layout.MV_UNITS_PER_PIXEL,
            "mv_sign": "dst_minus_src",
            "tools": {"comode": __version__, "ffmpeg": ffmpeg_version(), "pyav": av.__version__,
                      "libavcodec": ".".join(map(str, av.library_versions["libavcodec"]))},
        },
    }


def plan_extraction(root: zarr.Group, videos: Sequence["VideoItem"], *, retry_failed: bool = False) -> ExtractionPlan:
    # A group whose metadata cannot be read has no status: it is redone (and replaced whole).
    found, _ = scan_video_groups(root[layout.VIDEOS_GROUP])
    statuses = {name: attrs.get("status") for name, attrs in found.items()}
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
    root = create_or_open_root(store_url, root_attrs=root_attributes(dataset, settings),
                               storage_options=storage_options)
    videos = dataset.videos[:limit] if limit else dataset.videos
    plan = plan_extraction(root, videos, retry_failed=retry_failed)
    if on_plan:
        on_plan(plan)
    summary = ExtractionSummary(store=store_url, executor=executor.description, total=len(videos),
                                skipped_complete=plan.already_complete, skipped_failed=plan.already_failed)
    start = time.perf_counter()
    for item, result in executor.map_unordered(extract_to_store, plan.todo, settings, store_url, storage_options):
        if isinstance(result, StoreFullError):
            raise result  # no space for the store: every further write would fail too
        if isinstance(result, BaseException):
            # The task itself died (worker killed, out of memory, ...): record it here.
            name, detail = type(result).__name__, str(result)
            if name == "KilledWorker":  # dask's text is a paragraph: say what it means here
                detail = ("the worker process died on every try (a crash in native code, or the worker's "
                          "memory limit)")
            result = record_failure(root, item, f"task crashed: {name}: {detail}"[:500])
        if result.status == STATUS_COMPLETE:
            summary.completed += 1
            summary.frames += result.frames
        else:
            summary.failures.append((result.video_id, result.error or "unknown"))
        summary.seconds = time.perf_counter() - start
        if on_result:
            on_result(result, summary)
    summary.seconds = time.perf_counter() - start
    return summary
