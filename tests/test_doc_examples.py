"""The Python examples of docs/store.md (those marked ``<!-- doc-example -->``) and the
README's "Reusing the store" snippet run, in order, on a store fresh from the real
extraction pipeline that holds a failed video listed first and a complete one."""

import re
from pathlib import Path

import numpy as np
import pytest

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from tests.videos import translating_frames, write_video

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = re.compile(r"<!-- doc-example -->\n```python\n(.*?)```", re.DOTALL)
README_SNIPPET = re.compile(r"## Reusing the store without comode.*?```python\n(.*?)```", re.DOTALL)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> tuple[str, Path]:
    """(store URL, the complete video's source): ``a_broken/clip.mp4`` fails, ``b_moving/clip.mkv`` is complete."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "a_broken").mkdir()
    (root / "a_broken" / "clip.mp4").write_bytes(b"not a video")
    (root / "b_moving").mkdir()
    source = write_video(
        root / "b_moving" / "clip.mkv", translating_frames(frames=30, width=340, height=256, dx=2, dy=1)
    )
    url = str(tmp_path_factory.mktemp("store") / "demo.zarr")
    summary = run_extraction(load_dataset("folder", root), url, ExtractSettings(), SequentialExecutor())
    assert (summary.completed, len(summary.failures)) == (1, 1)
    return url, source


def _run(code: str, url: str, namespace: dict) -> None:
    exec(compile(code.replace("data/demo.zarr", url).replace("data/ucf101.zarr", url), "<doc>", "exec"), namespace)


def test_the_store_page_examples_run(demo_store):
    url, source = demo_store
    examples = EXAMPLE.findall((REPO / "docs/store.md").read_text())
    assert len(examples) == 5
    namespace = {"source_video": source}
    for code in examples:
        _run(code, url, namespace)
    assert namespace["video_id"] == "b_moving__clip.mkv"  # not the failed group listed first
    assert namespace["moving"].dims == ("frame", "cell_y", "cell_x")
    assert len(namespace["gops"]) == 3  # 30 frames, GOP 12
    iframes, vectors, residuals, labels = namespace["batch"]
    assert iframes.shape == (2, 128, 170, 3) and vectors.shape == (2, 2, 16, 22) and residuals.shape == (2, 128, 170, 3)
    # 6 frames after the I-frame, the texture moved 6 x (2, 1) px: the accumulated vectors say so.
    assert np.median(vectors[0, 0].numpy()) == 12 and np.median(vectors[0, 1].numpy()) == 6
    np.testing.assert_array_equal(namespace["clip"].arrays.mvs, namespace["video"].mvs[...])


def test_the_readme_snippet_asserts_on_a_complete_group(demo_store):
    url, _ = demo_store
    namespace: dict = {}
    _run(README_SNIPPET.search((REPO / "README.md").read_text()).group(1), url, namespace)
    assert namespace["mv_px"].shape == (30, 2, 16, 22)
