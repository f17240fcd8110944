"""A store handle that opens the store lazily in each process that uses it.

Datasets read the store from DataLoader worker processes.  An open store holds I/O state
(tensorstore contexts, zarr's event loop, file handles) that must not cross a fork or a
pickle, so a dataset keeps this handle instead: it pickles as its URL and options only,
and opens the store again the first time it is used in a new process.

    handle = LazyStore("data/ucf101.zarr")
    handle.get().video(video_id)     # opened here, on first use in this process
"""

from __future__ import annotations

import os
from typing import Any

from comode.store.reader import Store, open_store

__all__ = ["LazyStore"]


class LazyStore:
    """``get()`` returns the store opened in the calling process (opened on first use).

    Args:
        url: store URL (any URL :func:`comode.store.open_store` accepts).
        storage_options: fsspec options for remote stores.
    """

    def __init__(self, url: str, *, storage_options: dict | None = None) -> None:
        self.url, self.storage_options = str(url), storage_options
        self._store: Store | None = None
        self._pid: int | None = None

    def get(self) -> "Store":
        if self._store is None or self._pid != os.getpid():
            # Validated where the dataset was built; a worker only needs to read.
            self._store = open_store(self.url, storage_options=self.storage_options, validate=False)
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None, "_pid": None}  # never ship an open store
