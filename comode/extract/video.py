"""Extract one video: re-encode (isolated, time-limited), read MVs and I-frames, write its group.

``extract_to_store`` is the unit of work the executors run: it never raises for a bad
video; it records the failure in the store and returns a ``VideoResult`` saying so.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from comode.extract.datasets import VideoItem
from comode.extract.decode import read_streams
from comode.extract.encode import ExtractionFailure, injected_fault, reencode
from comode.extract.framerate import set_frame_rate
from comode.extract.mvgrid import motion_grid
from comode.extract.relabel import label_attrs
from comode.extract.settings import ExtractSettings
from comode.extract.sourceinfo import SourceInfo
from comode.store import STATUS_COMPLETE, STATUS_FAILED, VideoArrays, layout, write_failure, write_video
from comode.store.ownership import made_by_dead_local_process, process_tag
from comode.store.writer import WritableStore, is_store_full, open_root_for_writing, store_full_error


@dataclass(frozen=True)
class VideoResult:
    """Outcome of one video task (small: it travels back from Dask workers)."""

    video_id: str
    status: str  # "complete" | "failed"
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    bytes_written: int = 0
    already_complete: bool = False  # another run completed the group first: nothing written


def extract_arrays(source: Path, settings: ExtractSettings, *, workdir: Path) -> tuple[SourceInfo, VideoArrays]:
    """Re-encode ``source`` and turn the result into the arrays of its store group."""
    nut = workdir / "reencoded.nut"
    info = reencode(source, nut, settings)
    try:
        streams = read_streams(
            nut,
            codec=settings.codec,
            rgb_size=(settings.rgb_width, settings.rgb_height),
            mv_backend=settings.mv_backend,
        )
    except (ValueError, av_errors()) as error:
        raise ExtractionFailure(f"re-encoded stream unreadable: {error}") from None
    num_frames = len(streams.frame_types)
    times = info.frame_times
    if times is not None and len(times.ticks) != num_frames:
        raise ExtractionFailure(
            f"internal error: ffmpeg wrote the times of {len(times.ticks)} frames but encoded {num_frames}"
        )
    motion = motion_grid(
        streams.records,
        streams.frame_of_record,
        num_frames=num_frames,
        grid_shape=settings.grid_shape,
        cell=settings.mv_cell,
    )
    rgb_stream = streams.rgb_stream.copy()  # writable: the header's frame rate is set in place
    set_frame_rate(rgb_stream, streams.rgb_stream_offsets, streams.iframe_index, info.fps)
    arrays = VideoArrays(
        frame_types=streams.frame_types,
        iframes=streams.iframes,
        iframe_index=streams.iframe_index,
        mvs=motion.mvs,
        mv_valid=motion.valid,
        rgb_stream=rgb_stream,
        rgb_stream_offsets=streams.rgb_stream_offsets,
        timestamps=None if times is None else times.ticks,
    )
    return info, arrays


def extracted_attrs(info: SourceInfo, arrays: VideoArrays, settings: ExtractSettings) -> dict[str, Any]:
    """What a complete group records about its frames and its source (None values left out,
    but ``fps``, which the schema allows to be null)."""
    attrs = {
        # One stored frame per decoded source frame (the invariant, schemas/README.md).
        "source_frames": arrays.num_frames,
        layout.ATTR_FRAMES: arrays.num_frames,
        "width": settings.width,
        "height": settings.height,
        layout.ATTR_RGB_CODEC: layout.RGB_CODEC,
        "rgb_width": settings.rgb_width,
        "rgb_height": settings.rgb_height,
        **source_attrs(info),
    }
    return {k: v for k, v in attrs.items() if v is not None or k == "fps"}


def source_attrs(info: SourceInfo) -> dict[str, Any]:
    """What a complete group records about its source (None values are left out by the caller)."""
    time_base = info.frame_times.time_base if info.frame_times is not None else None
    return {
        "fps": info.fps,
        "source_codec": info.codec,
        "source_width": info.width,
        "source_height": info.height,
        "source_rotation": info.rotation,
        "source_stream": info.stream,
        "time_base": None if time_base is None else [time_base.numerator, time_base.denominator],
    }


# Each task's temporary folder (the re-encoded NUT file) is named after its process and host
# (comode.store.ownership), so that the folders of a process killed by SIGKILL (which cannot
# clean up) are found and removed by the next process that runs a task on the same machine:
# days of crashes do not fill $TMPDIR.
WORKDIR_PREFIX = "comode-extract-"


@functools.lru_cache(maxsize=None)
def sweep_stale_workdirs() -> int:
    """Remove temporary folders left by dead extraction processes of this host (once per process)."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        tag = folder.name[len(WORKDIR_PREFIX) :].rsplit("-", 1)[0]  # tempfile's suffix has no "-"
        if made_by_dead_local_process(tag):  # its process is gone: nobody will clean it up
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def av_errors() -> type[Exception]:
    return av.error.FFmpegError


def item_attrs(item: VideoItem) -> dict[str, Any]:
    """The attributes every video group carries, whatever its outcome."""
    return {layout.ATTR_SOURCE: item.source, **label_attrs(item)}


def extract_to_store(
    item: VideoItem, settings: ExtractSettings, store_url: str, storage_options: dict | None = None
) -> VideoResult:
    """The task: extract ``item`` and write its group (or its failure record) to the store."""
    start = time.perf_counter()
    root = open_root_for_writing(store_url, storage_options)
    done = _completed_elsewhere(root, item)  # another run into the same store did it since our plan
    if done is not None:
        return done
    sweep_stale_workdirs()
    try:
        with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{process_tag()}-") as tmp:
            info, arrays = extract_arrays(Path(item.path), settings, workdir=Path(tmp))
    except ExtractionFailure as failure:
        return record_failure(root, item, str(failure), start)
    except Exception as error:  # a bug or an unforeseen input: record it, keep the run going
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        return record_failure(root, item, f"internal error: {detail}", start)
    if arrays.num_frames > layout.MAX_FRAMES:  # readers refuse such a group (comode.store.bounds)
        return record_failure(
            root, item, f"{arrays.num_frames} frames, more than the {layout.MAX_FRAMES} a store's video may have", start
        )
    if injected_fault(Path(item.path), ("worker-crash",)):  # test-only, see encode.FAULT_INJECT_ENV
        os.kill(os.getpid(), signal.SIGSEGV)
    attrs = {
        **item_attrs(item),
        **extracted_attrs(info, arrays, settings),
        "seconds": round(time.perf_counter() - start, 3),
    }
    try:
        written = write_video(root, item.video_id, attrs, arrays, keep_complete=True)
    except OSError as error:
        if is_store_full(error):  # the store is full, not the video bad: stop, record nothing
            raise store_full_error(error, item.video_id) from None
        raise
    if not written:
        return _completed_elsewhere(root, item) or VideoResult(item.video_id, STATUS_COMPLETE, already_complete=True)
    return VideoResult(
        item.video_id,
        STATUS_COMPLETE,
        frames=arrays.num_frames,
        seconds=time.perf_counter() - start,
        bytes_written=arrays.nbytes,
    )


def _completed_elsewhere(root: WritableStore, item: VideoItem) -> VideoResult | None:
    """The result of a video whose group is complete already (one small read), else None."""
    marker = root.group_marker(item.video_id)
    if marker is None or marker.attrs.get(layout.ATTR_STATUS) != STATUS_COMPLETE:
        return None
    return VideoResult(
        item.video_id, STATUS_COMPLETE, frames=int(marker.attrs.get(layout.ATTR_FRAMES, 0)), already_complete=True
    )


def record_failure(root: WritableStore, item: VideoItem, reason: str, start: float | None = None) -> VideoResult:
    """Write ``item`` as failed with ``reason`` (not over a group another run completed); a
    full disk raises StoreFullError instead."""
    try:
        written = write_failure(root, item.video_id, item_attrs(item), reason, keep_complete=True)
    except OSError as error:
        if is_store_full(error):
            raise store_full_error(error, item.video_id) from None
        raise
    if not written:
        return VideoResult(item.video_id, STATUS_COMPLETE, already_complete=True)
    seconds = 0.0 if start is None else time.perf_counter() - start
    return VideoResult(item.video_id, STATUS_FAILED, seconds=seconds, error=reason)
