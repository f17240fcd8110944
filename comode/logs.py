"""Logging for every command: configured once, on one console, and in a file per run.

    from comode import logs
    logs.setup("INFO")                          # the CLI does this (--log-level)
    with logs.to_file(out_dir / "train.log"):   # every record of the run also goes there
        ...

- The console is stderr.  On a terminal, records are drawn by rich's handler and the
  progress bars (:mod:`comode.progress`) share its console, so a log line appears above a
  live bar instead of breaking it.  Elsewhere (a batch job, ``> log.txt 2>&1``, CI) records
  are plain lines with a timestamp, and progress is reported as periodic plain lines.
- Python warnings are logged (``py.warnings``), and so are the records of a Dask cluster's
  workers once :func:`forward_dask_logs` was called on the client.
- ``comode`` loggers log at the chosen level; other libraries' loggers at WARNING and above.
- A file (:func:`to_file`) gets every record at the chosen level, the progress lines
  included, with timestamps: what a batch job leaves beside its results.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["setup", "console", "to_file", "forward_dask_logs", "PROGRESS_LOGGER", "DETAIL_LOGGER", "LEVELS"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PROGRESS_LOGGER = "comode.progress"  # periodic progress lines (a terminal shows the bar instead)
# Long lists (every missing video of a dataset, ...): in the log file, not on the console,
# which shows their count and first few names.
DETAIL_LOGGER = "comode.detail"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Rich wraps at 80 columns when not on a terminal: in logs and pipes keep lines whole.
_CONSOLE = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
_HANDLER_NAME = "comode-console"


def console() -> Console:
    """The one stderr console: log records, progress bars and the CLI's messages."""
    return _CONSOLE


class _OthersWarnOnly(logging.Filter):
    """Records of other libraries only from WARNING up: some (distributed) set their own
    loggers to INFO, which would flood a run's log with their start-up lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(("comode", "py.warnings"))


class _NoDetailLines(logging.Filter):
    """The console shows counts and a few names; the log file has every line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(DETAIL_LOGGER)


class _NoProgressLines(logging.Filter):
    """On a terminal the live bar already shows progress: keep its periodic lines off it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(PROGRESS_LOGGER)


def setup(level: str | None = "INFO") -> None:
    """Configure logging for this process (again: only the level changes; None keeps the
    level set before, INFO if none was)."""
    root = logging.getLogger()
    configured = any(handler.get_name() == _HANDLER_NAME for handler in root.handlers)
    if level is None:
        if configured:
            return
        level = "INFO"
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not configured:
        if _CONSOLE.is_terminal:
            handler: logging.Handler = RichHandler(
                console=_CONSOLE, show_path=False, rich_tracebacks=False, log_time_format="[%X]"
            )
            handler.addFilter(_NoProgressLines())
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(_FORMAT))
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(_OthersWarnOnly())
        handler.addFilter(_NoDetailLines())
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("comode").setLevel(level)
    logging.captureWarnings(True)


@contextlib.contextmanager
def to_file(path: str | Path) -> Iterator[Path]:
    """Also write every record (at the configured levels) to ``path`` (appended) while inside.

    An exception that ends the block is recorded in the file too (only there: the console
    gets the command's own one-line error), so a batch job's log says why it stopped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_OthersWarnOnly())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    except BaseException as error:
        name = type(error).__name__
        handler.handle(
            logging.makeLogRecord(
                {"name": "comode", "levelno": logging.ERROR, "levelname": "ERROR", "msg": f"stopped by {name}: {error}"}
            )
        )
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


def forward_dask_logs(client) -> None:
    """Send the records of ``client``'s workers to this process's loggers (and so to its
    console and log file): ``comode`` records at this process's level, warnings included
    (workers log Python warnings too)."""
    from distributed.diagnostics.plugin import WorkerPlugin  # lazy: dask costs ~0.5 s, and only extraction uses it

    level = logging.getLogger("comode").getEffectiveLevel()

    class WorkerLogging(WorkerPlugin):
        """Each worker (also one started later) logs Python warnings, and comode's records at
        the client's level: a worker process starts with Python's defaults."""

        def setup(self, worker) -> None:  # noqa: ARG002 -- the plugin interface
            logging.captureWarnings(True)
            logging.getLogger("comode").setLevel(level)

    client.register_plugin(WorkerLogging(), name="comode-logging")
    client.forward_logging("comode", level=level)
    client.forward_logging("py.warnings", level=logging.WARNING)
