"""Shared fixtures: the team's real test data (../shared/data), small real inputs, store comparison."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from comode.store import open_store

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


def assert_stores_equal(a: str, b: str) -> None:
    """Same videos, same status and attributes (but timings and write ids), every array equal
    element for element; each store's listing (its index) says what its groups say."""
    store_a, store_b = open_store(a), open_store(b)
    attrs_a, attrs_b = store_a.video_attrs(), store_b.video_attrs()
    assert sorted(attrs_a) == sorted(attrs_b)
    strip = lambda attrs: {k: v for k, v in attrs.items() if k not in ("seconds", "write_id")}  # noqa: E731
    for video_id in attrs_a:
        assert strip(attrs_a[video_id]) == strip(attrs_b[video_id]), video_id
        group_a, group_b = store_a.video(video_id).group, store_b.video(video_id).group
        full_a, full_b = group_a.attrs.asdict(), group_b.attrs.asdict()
        assert strip(full_a) == strip(full_b), video_id
        assert all(full_a.get(k) == v for k, v in attrs_a[video_id].items()), video_id  # listing = group
        if attrs_a[video_id]["status"] != "complete":
            continue
        names_a, names_b = sorted(group_a.array_keys()), sorted(group_b.array_keys())
        assert names_a == names_b, video_id
        for name in names_a:
            np.testing.assert_array_equal(group_a[name][...], group_b[name][...], err_msg=f"{video_id}/{name}")


@pytest.fixture(scope="session")
def stores_equal() -> Callable[[str, str], None]:
    return assert_stores_equal
