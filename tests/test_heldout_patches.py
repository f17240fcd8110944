"""The held-out set of `benchmarks/heldout_patches.py` at its smallest: its two label sets
are independent (every direction x every scene, the same count in each split), a test
clip's background is never a train clip's, and the store the benchmark builds -- the user's
`extract --dataset folder`, then `--dataset sample` on the same root -- carries both label
sets on the same videos.  (The benchmark itself pretrains for minutes: not run here.)"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import subprocess

from comode.extract.datasets import load_dataset
from comode.store import open_store
from tests.commands import comode_command
from tests.conftest import REPO


def _benchmark():
    spec = importlib.util.spec_from_file_location("heldout_patches", REPO / "benchmarks" / "heldout_patches.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_heldout_set_has_independent_motion_and_scene_labels_and_the_store_carries_both(
    real_dir, tmp_path, monkeypatch
):
    heldout = _benchmark()
    monkeypatch.setattr(heldout, "SHARED", real_dir.parent)
    monkeypatch.setattr(heldout, "FRAMES", 16)  # short clips: the labels do not depend on the length
    root, store = tmp_path / "videos", tmp_path / "videos.zarr"
    count = heldout.make_set(root, clips_per_class=4, backgrounds=2, test_share=1 / 3, seed=0)
    assert count == 6 * 4

    dataset = load_dataset("sample", root)
    assert set(dataset.label_sets) == {"motion", "scene"}
    assert len(dataset.label_sets["motion"]) == 6 and len(dataset.label_sets["scene"]) == 2
    cells = collections.Counter(
        (v.label_names["motion"], v.label_names["scene"], v.splits["1"]) for v in dataset.videos
    )
    # Independent and balanced: every direction x scene x split holds the same number of clips.
    assert len(cells) == 6 * 2 * 2 and set(cells.values()) == {1}
    # The folder format reads the same videos with the motion labels and the same split.
    folder = {v.video_id: (v.class_name, dict(v.splits)) for v in load_dataset("folder", root).videos}
    assert folder == {v.video_id: (v.label_names["motion"], dict(v.splits)) for v in dataset.videos}

    records = json.loads((root / "clips.json").read_text())
    scenes = {v.label_names["scene"] for v in dataset.videos}
    assert not scenes & {source for r in records.values() for source in r["patch_sources"]}
    # Test backgrounds are other frames of the scene clip than train backgrounds (odd vs even).
    assert all(r["scene_frame"] % 2 == path.startswith("test/") for path, r in records.items())

    outputs = []
    for kind in ("folder", "sample"):
        result = subprocess.run(
            comode_command(
                "extract", "--dataset", kind, "--root", root, "--out", store, "--workers", "0", "--no-progress"
            ),
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "250"},  # the summary table on one line per row
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        outputs.append(result.stdout + result.stderr)  # the summary goes to the console (stderr)
    # The second run extracts nothing: it gives the same groups both label sets.
    assert "0 extracted now, 24 already complete" in outputs[1]
    assert "24 videos relabelled" in outputs[1]
    extracted = open_store(str(store))
    assert extracted.label_sets == {k: list(v) for k, v in dataset.label_sets.items()}
    train, test = extracted.split("1")
    assert len(train) == len(test) == 12
    ids = [*train, *test]
    by_id = {v.video_id: v for v in dataset.videos}
    assert extracted.labels(ids) == extracted.labels(ids, "motion")
    assert extracted.labels(ids, "scene") == [by_id[i].labels["scene"] for i in ids]
