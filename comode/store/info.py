"""A human-readable description of a store (``comode store info``).

Everything comes from the root's attributes and the index (O(1) reads whatever the store's
size): the group sizes too, which writers record in the index.  A store listed by reading
every group (no index) is also measured by walking its files, as before the index.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from comode.store import layout
from comode.store.reach import reaching
from comode.store.reader import Store, StoreError, open_store
from comode.store.root_files import read_root_file


def describe_store(url: str) -> Table:
    store = open_store(url)
    with reaching(url, StoreError):  # a connection lost after the opening: one line
        return _describe(store)


def _describe(store: Store) -> Table:
    url = store.url
    listing = store.read_listing()
    store = replace(store, listing=listing)
    attrs, unreadable = store.scan_videos()  # wrong-typed attributes counted as unreadable
    by_status = Counter(a.get(layout.ATTR_STATUS, "missing") for a in attrs.values())
    complete = [a for a in attrs.values() if a.get(layout.ATTR_STATUS) == layout.STATUS_COMPLETE]
    frames = sum(int(a.get(layout.ATTR_FRAMES, 0)) for a in complete)
    table = Table(title=f"{url} ({store.attrs[layout.ATTR_SCHEMA]})", show_header=False, box=None)
    dataset = store.dataset
    table.add_row("dataset", f"{dataset['name']} from {dataset.get('root', '?')}")
    table.add_row(
        "classes",
        f"{len(store.classes)}"
        + (f": {', '.join(store.classes[:8])}" + (" ..." if len(store.classes) > 8 else "") if store.classes else ""),
    )
    table.add_row("splits", ", ".join(store.split_names) or "none")
    report = read_root_file(url, layout.DATASET_REPORT, store.storage_options)
    if report is not None:
        table.add_row("dataset report", _report_summary(report))
    by_status.update({"unreadable": len(unreadable)} if unreadable else {})
    table.add_row("videos", ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none")
    table.add_row("frames", f"{frames} in complete videos")
    size = listing.nbytes if listing.source == "index" else _local_size(url)
    if size is not None and frames:
        table.add_row("size", f"{size / 1e6:.1f} MB of video groups = {size / frames:.0f} bytes per frame")
    elif frames:
        table.add_row("size", "not in the index (groups indexed from a scan of a remote store)")
    table.add_row(
        "listed from", listing.note if listing.source == "index" else f"a scan of every group: {listing.note}"
    )
    extraction = store.extraction
    table.add_row(
        "MV stream",
        f"{extraction['codec']} {extraction['width']}x{extraction['height']} GOP {extraction['gop']} "
        f"q{extraction.get('quality')}, grid cell {extraction['mv_cell']} px, "
        f"1/{extraction['mv_units_per_pixel']} px units, sign {extraction['mv_sign']}",
    )
    table.add_row("RGB stream", f"{extraction['rgb_codec']} {extraction['rgb_width']}x{extraction['rgb_height']}")
    table.add_row("tools", ", ".join(f"{k} {v}" for k, v in extraction.get("tools", {}).items()))
    failed = sorted(
        (vid, a.get(layout.ATTR_ERROR, ""))
        for vid, a in attrs.items()
        if a.get(layout.ATTR_STATUS) == layout.STATUS_FAILED
    )
    for vid, error in failed[:20]:
        table.add_row("[red]failed", f"{vid}: {error}")
    if len(failed) > 20:
        table.add_row("", f"... and {len(failed) - 20} more failed")
    return table


def _report_summary(report: dict) -> str:
    """One line of ``dataset_report.json``: the counts of its lists, and the first names."""
    counts = {kind: len(report.get(kind) or []) for kind in ("missing", "unlisted", "skipped", "incomplete")}
    line = ", ".join(
        f"{n} {what}"
        for what, n in (
            ("annotated but not extracted", counts["missing"]),
            ("unlisted (extracted unlabelled, in no split)", counts["unlisted"]),
            ("annotation files or rows skipped", counts["skipped"]),
            ("expected annotation files absent", counts["incomplete"]),
        )
        if n
    )
    absent = [item.get("file", "?") for item in report.get("incomplete") or []][:3]
    return (
        (line or "every annotated video found, every video annotated")
        + (f" (absent: {', '.join(absent)})" if absent else "")
        + f"; all in {layout.DATASET_REPORT}"
    )


def _local_size(url: str) -> int | None:
    path = Path(url)
    if "://" in url or not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
