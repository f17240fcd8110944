"""One writer at a time per video group, across processes, runs and hosts: a claim file.

The store's rule is one writer per group.  Within a run the scheduler keeps it (one task
per video); two runs into one store (two hosts started on the same dataset, a re-run while
the first still runs) would otherwise write a video at the same moment, and one writer's
removal of the old group could take the other's files away under its marker.  A writer
therefore holds ``index/claims/<video_id>.json`` while it replaces a group: created only if
absent (``O_EXCL`` locally, a conditional PUT on object stores), removed after the group's
``done`` line.  A writer that finds a claim waits for it; a claim whose process is dead
(this host) or that is older than :data:`STALE_S` (another host: its pid says nothing here)
is broken.  Held for the write only (milliseconds locally), not during the extraction.
Clocks differ between hosts, so a claim's age is also measured on this host's clock: a
claim whose ``since`` is more than :data:`STALE_S` away from now (behind *or ahead*: a
host whose clock runs ahead wrote it) is broken, and so is one that stayed the same for
:data:`STALE_S` of this host's waiting, whatever its ``since`` says.

Hand-written: a lock file with stale-owner detection is a dozen lines over the two
primitives each kind of store offers; the lock-file libraries we know of (filelock, ...)
cover local folders only and judge staleness by pid alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from typing import Iterator

from comode.store.index.files import LocalIndexFiles, ObjectIndexFiles
from comode.store.ownership import made_by_dead_local_process, process_tag

logger = logging.getLogger("comode.store.claims")

# A claim older than this is taken to be left by a writer that died on another host: a
# group's write (removal, ~15 files, marker) takes milliseconds locally and seconds on S3.
STALE_S = 120.0
# How long a writer waits for another writer's claim before giving up on the video.
WAIT_S = 600.0


class ClaimTimeout(RuntimeError):
    """Another writer held a video's claim for longer than :data:`WAIT_S`."""


@contextlib.contextmanager
def claimed(files: LocalIndexFiles | ObjectIndexFiles, video: str) -> Iterator[None]:
    """Hold the claim of ``video`` for the duration of the ``with`` block."""
    body = json.dumps({"writer": process_tag(), "since": time.time(), "claim": uuid.uuid4().hex}).encode()
    deadline = time.monotonic() + WAIT_S
    seen: dict[bytes, float] = {}  # claim body -> when this process first saw it (monotonic)
    while not files.create_claim(video, body):
        holder = files.read_claim(video)
        if holder is None:
            continue  # released just now
        if holder not in seen:
            seen[holder] = time.monotonic()
            if not _abandoned(holder):
                logger.info(
                    "videos/%s: waiting for another writer's claim (%s)", video, holder.decode(errors="replace")[:200]
                )
        if _abandoned(holder) or time.monotonic() - seen[holder] > STALE_S:
            files.remove_claim(video, holder)
            continue
        if time.monotonic() > deadline:
            raise ClaimTimeout(
                f"videos/{video} is being written by another process ({holder.decode()[:200]}) "
                f"for more than {WAIT_S:.0f} s"
            )
        time.sleep(random.uniform(0.01, 0.05))
    try:
        yield
    finally:
        files.remove_claim(video, body)


def _abandoned(body: bytes) -> bool:
    try:
        holder = json.loads(body)
        age = time.time() - float(holder["since"])
        return made_by_dead_local_process(str(holder["writer"])) or not abs(age) <= STALE_S  # NaN: abandoned
    except (ValueError, KeyError, TypeError):
        return True  # not a claim we wrote (a partial write of one): nobody holds it


def remove_abandoned_claims(files: LocalIndexFiles | ObjectIndexFiles) -> int:
    """Remove claims left by dead writers (a SIGKILL after the group was complete)."""
    removed = 0
    for video in files.claims():
        body = files.read_claim(video)
        if body is not None and _abandoned(body) and files.remove_claim(video, body):
            removed += 1
    return removed
