"""Deep validation of a store: attributes against the schemas, arrays against each other, the index against the groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import zarr

from comode.store import layout
from comode.store.bounds import frames_problem, packet_bound
from comode.store.containment import tree_problems
from comode.store.index.check import check_index
from comode.store.labels import check_labels
from comode.store.location import is_plain_local, local_path
from comode.store.reach import reaching, unreachable_reason
from comode.store.reader import Store, StoreError, open_store
from comode.store.schema import SchemaError, check_video_attrs


@dataclass
class ValidationReport:
    store: str
    checked: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    index: str = ""  # what the index check found, for people

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_store(
    url: str,
    *,
    storage_options: dict | None = None,
    read_data: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Check the root (raises SchemaError/StoreError if unusable), then every video group.

    read_data: also read every array of every complete video whole, so that each chunk's
        CRC32C and decompression are checked: what finds bit rot or a store copied in part
        (the writer fsyncs a group's data before its "complete" marker).
    on_progress: called with (video groups checked, all video groups), first with 0.
    """
    store = open_store(url, storage_options=storage_options)
    with reaching(url, StoreError):  # a connection lost later: one line (naming the video being read)
        return _validate(store, read_data=read_data, on_progress=on_progress)


def _validate(store: Store, *, read_data: bool, on_progress: Callable[[int, int], None] | None) -> ValidationReport:
    url, storage_options = store.url, store.storage_options
    report = ValidationReport(store=url)
    found, unreadable = store.scan_groups()
    groups = _video_attrs(found, unreadable, report)
    unsafe = _unsafe_entries(url, storage_options, reported=set(unreadable))
    report.problems.extend(unsafe)
    # Groups holding such an entry are reported for it; their arrays are not read.
    refused = {
        problem.split("/")[1].split(":")[0] for problem in unsafe if problem.startswith(f"{layout.VIDEOS_GROUP}/")
    }
    conforming = {}
    for done, (video_id, attrs) in enumerate(groups):
        if on_progress is not None:
            on_progress(done, len(groups))
        status = attrs.get(layout.ATTR_STATUS, "missing")
        report.by_status[status] = report.by_status.get(status, 0) + 1
        report.checked += 1
        try:
            check_video_attrs(attrs, where=f"videos/{video_id}")
        except SchemaError as error:
            report.problems.append(str(error))
            continue
        conforming[video_id] = attrs
        if status == layout.STATUS_COMPLETE and video_id not in refused:
            with reaching(url, StoreError, video=video_id):  # the connection lost: one line, not a finding
                problems = _check_arrays(store, video_id)
                if read_data and not problems:
                    problems = _read_arrays(store, video_id)
            report.problems.extend(f"videos/{video_id}: {p}" for p in problems)
    if on_progress is not None:
        on_progress(len(groups), len(groups))
    # Groups that break the schema are reported for that alone (not also as differing from the index).
    outcome = check_index(
        url,
        found=conforming,
        unreadable=unreadable,
        ignore=set(found) - set(conforming),
        storage_options=storage_options,
    )
    report.index = outcome.summary
    report.problems.extend(outcome.problems)
    report.problems.extend(check_labels(store.dataset, conforming))
    return report


def _unsafe_entries(url: str, storage_options: dict | None, *, reported: set[str]) -> list[str]:
    """Every symbolic link and non-regular file in a local store (comode writes neither:
    :mod:`comode.store.containment`), but for the groups already ``reported`` unreadable."""
    if not is_plain_local(url, storage_options):
        return []
    root = local_path(url)
    already = {f"{layout.VIDEOS_GROUP}/{name}" for name in reported}
    return [
        problem
        for problem in tree_problems(root, root)
        if problem.split(":", 1)[0] not in already and problem.split(":", 1)[0].rsplit("/", 1)[0] not in already
    ]


# validate --data reads an array in blocks of about this many bytes (whole chunks), so that
# its memory does not grow with a video's length (an array may be T x 1408 bytes and more,
# T up to layout.MAX_FRAMES); large enough that one read spans many chunks.
READ_BLOCK_BYTES = 32 << 20


def _read_arrays(store: Store, video_id: str) -> list[str]:
    """Read every array, block by block (the read path training uses), then decode the
    stream's first frame; a chunk that fails its checksum or decompression is named, and a
    stream that does not decode as the store says (its codec, frames no larger than its RGB
    size: what a reader checks at each frame)."""
    video = store.video(video_id)
    present = video.group
    problems = []
    for name in layout.ARRAY_NAMES + tuple(n for n in layout.OPTIONAL_ARRAY_NAMES if n in present):
        try:
            array = video.array(name)
            row_bytes = array.dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
            rows = array.chunks[0] * max(1, READ_BLOCK_BYTES // max(1, row_bytes * array.chunks[0]))
            for start in range(0, max(1, array.shape[0]), rows):
                array[start : start + rows]
        except Exception as error:  # any codec error is a finding to report, not a crash
            _raise_unreachable(store, error)
            problems.append(
                f"{name} data unreadable (a chunk fails its checksum or does not decode: "
                f"{type(error).__name__}: {error}); to redo this video, "
                f"delete videos/{video_id} and run the same extract command again"
            )
    if not problems:
        try:
            video.decode_frames([0])
        except Exception as error:
            _raise_unreachable(store, error)
            problems.append(f"rgb_stream does not decode as the store says: {type(error).__name__}: {error}")
    return problems


def _raise_unreachable(store: Store, error: Exception) -> None:
    """Raise ``error`` when it means the store could not be reached: not the data's fault."""
    if unreachable_reason(store.url, error) is not None:
        raise error


def _video_attrs(
    found: dict[str, dict], unreadable: dict[str, str], report: ValidationReport
) -> list[tuple[str, dict]]:
    """(video id, attributes) of every readable group under videos/; a group with damaged
    metadata is reported by name instead of stopping the validation."""
    for name, reason in sorted(unreadable.items()):
        report.checked += 1
        report.by_status["unreadable"] = report.by_status.get("unreadable", 0) + 1
        report.problems.append(f"videos/{name}: {reason}")
    return sorted(found.items())


def _check_arrays(store: Store, video_id: str) -> list[str]:
    """The problems of a complete video's arrays: first their metadata against the frame
    count and the store's settings (:mod:`comode.store.bounds`: nothing is read from an
    array that fails it), then the arrays against each other."""
    video = store.video(video_id)
    settings = store.extraction
    group = video.group
    missing = [name for name in layout.ARRAY_NAMES if name not in group]
    if missing:
        return [f"complete but arrays missing: {', '.join(missing)}"]
    frames = frames_problem(video.attrs.get(layout.ATTR_FRAMES))
    if frames is not None:
        return [frames]
    problems = []
    # timestamps optional since schema_minor 2, mv_valid since 4: older stores have none.
    present = layout.ARRAY_NAMES + tuple(name for name in layout.OPTIONAL_ARRAY_NAMES if name in group)
    if layout.TIMESTAMPS in present and "time_base" not in video.attrs:
        problems.append("timestamps without a time_base attribute")
    for name in present:
        node = group[name]
        problem = video.array_problem(name, node) if isinstance(node, zarr.Array) else f"{name} is not an array"
        if problem is not None:
            problems.append(problem)
    if problems:
        return problems
    types = video.frame_types
    if set(types) - set("IPB"):
        problems.append(f"frame_types holds letters other than I/P/B: {sorted(set(types) - set('IPB'))}")
    iframe_index = video.iframe_index
    if not np.array_equal(iframe_index, np.flatnonzero(np.frombuffer(types.encode(), np.uint8) == ord("I"))):
        problems.append("iframe_index does not list the 'I' positions of frame_types")
    iframes = group[layout.IFRAMES]
    if iframes.shape != (len(iframe_index), settings["rgb_height"], settings["rgb_width"], 3):
        problems.append(f"iframes shape {iframes.shape} does not match iframe_index and rgb size")
    offsets = video.rgb_stream_offsets
    packets = np.diff(offsets)
    if offsets[0] != 0 or np.any(packets <= 0) or offsets[-1] != group[layout.RGB_STREAM].shape[0]:
        problems.append("rgb_stream_offsets must start at 0, increase strictly and end at len(rgb_stream)")
    elif packets.max(initial=0) > packet_bound(settings):  # readers refuse to read such a span
        problems.append(
            f"rgb_stream_offsets give frame {int(packets.argmax())} a packet of {int(packets.max())} bytes, "
            f"more than the {packet_bound(settings)} a frame may have at the store's RGB size"
        )
    return problems
