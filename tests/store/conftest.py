"""The store tests' shared fixture: a real extraction result."""

from __future__ import annotations

import pytest

from comode.extract.settings import ExtractSettings
from comode.extract.video import extract_arrays
from tests.videos import translating_frames, write_video


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A real extraction result: 26 frames of a texture moving right, GOP 12."""
    work = tmp_path_factory.mktemp("synthetic")
    video = write_video(work / "moving.mkv", translating_frames(frames=26, width=340, height=256, dx=2, dy=0))
    _, arrays = extract_arrays(video, ExtractSettings(), workdir=work)
    return arrays
