"""Which process made a temporary file or folder, so that leftovers of dead processes are removed safely.

A process killed by SIGKILL cannot clean up after itself; the next process that finds its
leftovers removes them, but only when it can tell that their maker is dead.  A bare pid
cannot say that across machines (a Dask worker on another host writing to the same shared
file system, containers sharing a /tmp): a pid that is free here may be a live writer
there.  Names therefore carry ``<hostname>_<pid>``, and only leftovers of THIS host whose
pid is gone are judged dead; anything else is left alone.
"""

from __future__ import annotations

import os
import re
import socket

__all__ = ["process_tag", "made_by_dead_local_process"]


def _host() -> str:
    # Hostnames are [A-Za-z0-9.-]; anything else is replaced so the tag stays a safe file name.
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


def process_tag(pid: int | None = None) -> str:
    """``<hostname>_<pid>`` of this process (or of ``pid`` on this host)."""
    return f"{_host()}_{os.getpid() if pid is None else pid}"


def made_by_dead_local_process(tag: str) -> bool:
    """Whether ``tag`` (a :func:`process_tag`) names a process of this host that no longer exists.

    False for other hosts, for this process, for live processes and for names that are not
    tags (e.g. an older version's bare pid): when in doubt, a leftover is kept.
    """
    host, _, pid = tag.rpartition("_")
    if host != _host() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # alive but not ours to signal
        pass
    return False
