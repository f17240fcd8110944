"""Shared fixtures: the team's real test data (../shared/data) and small real inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMODE_SHARED_DATA", REPO.parent / "shared" / "data"))

# Small real clips (240p-256p, ~10 s) that keep end-to-end tests fast on 2 cores.
SMALL_REAL_CLIPS = ("mmaction2_apply_eye_makeup.avi", "torchcodec_nasa_13013.mp4", "mmaction2_arm_wrestling.mp4")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (set COMODE_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def real_dir() -> Path:
    return _require(SHARED_DATA / "real")


@pytest.fixture(scope="session")
def mv_reference_dir() -> Path:
    return _require(SHARED_DATA / "mv_reference")


@pytest.fixture(scope="session")
def small_real_folder(tmp_path_factory, real_dir) -> Path:
    """A `folder`-layout dataset of three small real clips in two classes (symlinks, no copies)."""
    root = tmp_path_factory.mktemp("real_folder")
    classes = {"people": SMALL_REAL_CLIPS[:1] + SMALL_REAL_CLIPS[2:], "space": SMALL_REAL_CLIPS[1:2]}
    for name, clips in classes.items():
        (root / name).mkdir()
        for clip in clips:
            (root / name / clip).symlink_to(real_dir / clip)
    return root
