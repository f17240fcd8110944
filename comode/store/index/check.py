"""``store validate``'s index check: does the index say what the groups say?

Run on a store no extraction is writing to (a write under way makes its video unsettled,
which is skipped, but a write that starts during the check can make it differ).  Every
settled video of the index must match its group (write id and indexed attributes) and
every group must be in the index; unsettled videos are fine (readers read those groups).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comode.store import layout
from comode.store.index.files import index_files
from comode.store.index.read import IndexDamaged, read_index
from comode.store.index.state import EMPTY_WRITE, scan_markers

# Differences listed one by one; more are counted.
SHOWN = 20
REINDEX_HINT = "`comode store reindex STORE` rebuilds the index from the groups"


@dataclass
class IndexCheck:
    summary: str
    problems: list[str] = field(default_factory=list)


def check_index(
    url: str,
    *,
    found: dict[str, dict[str, Any]],
    unreadable: dict[str, str],
    ignore: set[str],
    storage_options: dict | None = None,
) -> IndexCheck:
    """Compare the index with the groups as a full scan read them (``found``: attributes by id,
    ``unreadable``: reason by id); ``ignore``: groups already reported for other reasons."""
    files = index_files(url, storage_options)
    names = files.video_names() or set()
    try:
        read = read_index(files)
    except IndexDamaged as error:
        return IndexCheck("damaged", [f"index: damaged ({error}); {REINDEX_HINT}"])
    if read is None:
        return IndexCheck(
            f"none (readers list this store by reading every group; `comode store reindex {url}` writes one)"
            if names
            else "none (no videos)"
        )
    truth = scan_markers(found, unreadable, names)
    differences, unsettled = [f"entry left out: {line}" for line in read.ignored], 0
    for video in sorted((set(read.state.videos) | set(truth)) - ignore):
        settled, token, live = read.state.settled(video)
        if not settled:
            unsettled += 1
            continue
        group = truth.get(video)
        if live is None and (group is None or group.write == EMPTY_WRITE):
            continue  # nothing on either side (or a folder without metadata that is no video)
        if live is None:
            differences.append(
                f"videos/{video}: not in the index (the group says {group.attrs.get(layout.ATTR_STATUS)!r})"
            )
        elif group is None:
            differences.append(
                f"videos/{video}: in the index as {live.attrs.get(layout.ATTR_STATUS)!r}, but there is no group"
            )
        elif token != group.write or live.attrs != group.attrs:
            changed = sorted(
                key for key in set(live.attrs) | set(group.attrs) if live.attrs.get(key) != group.attrs.get(key)
            )
            what = f"differs in {', '.join(changed)}" if changed else "is another write of it"
            differences.append(f"videos/{video}: the index {what} (index: write {token}, group: write {group.write})")
    problems = [f"index: {line}" for line in differences[:SHOWN]]
    if len(differences) > SHOWN:
        problems.append(f"index: ... and {len(differences) - SHOWN} more videos differ")
    if problems:
        problems.append(f"index: out of date for {len(differences)} video(s); {REINDEX_HINT}")
    summary = (
        f"{'matches the groups' if not differences else f'{len(differences)} video(s) differ'} "
        f"({read.what_was_read()}" + (f", {unsettled} video(s) with a write under way" if unsettled else "") + ")"
    )
    return IndexCheck(summary, problems)
