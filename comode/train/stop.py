"""Stop a run cleanly on SIGTERM or Ctrl-C: finish the step, save last.pt, exit.

A batch scheduler (SLURM, Kubernetes) ends a job with SIGTERM and kills it a little later;
a user presses Ctrl-C.  Without this the run dies mid-step and loses everything since the
last ``save_every_steps`` checkpoint (10 minutes of a CPU run, an hour of a GPU one).  With
it, :class:`StopRequest` records the signal, the loop finishes the step it is in, writes
``last.pt`` and returns; the CLI then exits with 128 + the signal's number (the shell
convention: 143 for SIGTERM, 130 for SIGINT), so a job script can tell a stop from a
finished run.  A second Ctrl-C stops at once, as Ctrl-C always does.

Under torchrun every rank must stop at the same step (a rank that leaves the loop early
would hang the others in the next collective), so the flag is combined over the ranks
every step: one all-reduce of one number.

DataLoader workers ignore both signals (:func:`comode.data.loader.ignore_in_worker`).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

import torch
import torch.distributed as dist

from comode.data.loader import STOP_SIGNALS
from comode.distributed import world_size

__all__ = ["StopRequest"]


class StopRequest:
    """A context manager that turns the first SIGTERM / SIGINT into a request to stop.

    ``with StopRequest() as stop: ... if stop.agreed(): ...``.  Outside the main thread
    (where Python cannot install handlers) it does nothing and never requests a stop.
    The previous handlers come back on exit.

    Attributes:
        signal_number: the first stop signal received, or None.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_number is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if self.signal_number is None:
            self.signal_number = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number is not None else ""

    def agreed(self, device: torch.device) -> bool:
        """Whether any rank was asked to stop (all ranks get the same answer)."""
        asked = self.signal_number is not None
        if world_size() == 1:
            return asked
        flag = torch.tensor([float(asked)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signal_number is None:
            self.signal_number = signal.SIGTERM  # another rank's request
        return bool(flag.item())
