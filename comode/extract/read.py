"""One video's store arrays without a store: the motion-vector API for other projects.

``read_video(path)`` runs the extraction of one video (the same re-encode, decode and grid
code as ``comode extract``, :func:`comode.extract.video.extract_arrays`) in a temporary
folder and returns what its store group would hold, with nothing written anywhere.  For
code that wants a clip's vectors, their mask, frame types and I-frames now, not a dataset.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comode.extract.encode import ExtractionFailure
from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_arrays, extracted_attrs
from comode.store import VideoArrays


@dataclass(frozen=True)
class ReadVideo:
    """A video's store group, in memory.

    attrs: the attributes its group would carry (``fps``, ``frames``, ``width``, ``height``,
        ``source_*``, ``time_base``; no dataset labels, no status).
    arrays: the arrays: ``mvs`` (T, 2, gh, gw) int16 quarter pixels, ``mv_valid`` (T, gh, gw),
        ``frame_types`` (T,), ``iframes`` (K, h, w, 3), ``iframe_index`` (K,), ``rgb_stream``
        (N,) and its (T + 1,) offsets, ``timestamps`` (T,) or None.
    """

    attrs: dict[str, Any]
    arrays: VideoArrays


def read_video(path: str | Path, settings: ExtractSettings | None = None) -> ReadVideo:
    """Extract ``path`` as ``comode extract`` would (``settings``: the defaults), in memory.

    Raises ExtractionFailure with the reason a store would record for a video that cannot
    be extracted.
    """
    settings = settings or ExtractSettings()
    with tempfile.TemporaryDirectory(prefix="comode-read-") as workdir:
        info, arrays = extract_arrays(Path(path), settings, workdir=Path(workdir))
    return ReadVideo(extracted_attrs(info, arrays, settings), arrays)


__all__ = ["ExtractionFailure", "ReadVideo", "read_video"]
