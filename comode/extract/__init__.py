"""Extraction: re-encode videos, read their motion vectors and frames, write a store.

``read_video(path)`` (:mod:`comode.extract.read`) gives one video's arrays without a store.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy: importing a submodule (comode.extract.settings) must not load PyAV and the decoder.
    if name in ("read_video", "ReadVideo"):
        from comode.extract import read

        return getattr(read, name)
    raise AttributeError(f"module 'comode.extract' has no attribute {name!r}")


__all__ = ["ReadVideo", "read_video"]
