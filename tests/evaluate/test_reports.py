"""Retrieval end to end (report, picture, random init), and `compare`."""

import json

import numpy as np
import pytest
from PIL import Image

from comode.evaluate.options import FeatureOptions
from comode.evaluate.report import compare_table, load_report, render_text, write_report
from comode.evaluate.retrieval import recall_at_k, run_retrieval

SIZE = 64  # clip side: 3x fewer pixels than 112, nothing here depends on it


def cpu_cached(cache_dir) -> FeatureOptions:
    """Features on the CPU at the small clip side, from (or into) the session's feature cache."""
    return FeatureOptions(device="cpu", size=SIZE, cache_dir=cache_dir)


def test_run_retrieval_writes_report_and_picture(eval_store, tiny_checkpoint, tmp_path, feature_cache):
    result = run_retrieval(
        eval_store, tiny_checkpoint, out_dir=tmp_path, picture_queries=3, features=cpu_cached(feature_cache)
    )
    report = json.loads(result.report_path.read_text())
    assert report["kind"] == "retrieval" and set(report["metrics"]) == {"R@1", "R@5", "R@10", "R@20"}
    assert report["counts"]["queries"] == 3 and report["counts"]["gallery"] == 6 and report["counts"]["failed"] == 0
    assert report["settings"]["split"] == "1" and report["settings"]["center"] is False
    assert report["settings"]["clips_per_video"] == 10
    assert report["model"]["kind"] == "checkpoint" and report["model"]["path"] == str(tiny_checkpoint.resolve())
    # R@5 with 2 classes and 3 of each in the gallery is always a hit
    assert report["metrics"]["R@5"] == 1.0 and report["metrics"]["R@20"] == 1.0
    # the metric equals recall_at_k on the cached features
    cached = list(feature_cache.glob("*.npz"))
    assert len(cached) == 2
    sides = {}
    for path in cached:
        with np.load(path) as data:
            sides[len(data["video_ids"])] = (data["features"], data["labels"])
    (test_x, test_y), (train_x, train_y) = sides[3], sides[6]
    assert recall_at_k(test_x, test_y, train_x, train_y, (1,))[1] == report["metrics"]["R@1"]
    picture = np.asarray(Image.open(result.picture_path).convert("RGB"))
    assert picture.shape[0] == 20 + 3 * (128 + 6 + 16) and picture.shape[1] == 6 * (170 + 6) + 12
    green = (picture == (40, 200, 60)).all(axis=2).sum()
    red = (picture == (230, 40, 40)).all(axis=2).sum()
    assert green + red > 15 * 2 * (170 + 128)  # 15 neighbour frames drawn, each green or red
    # a second run hits the feature cache and gives the same numbers
    again = run_retrieval(
        eval_store, tiny_checkpoint, out_dir=tmp_path, picture_queries=0, features=cpu_cached(feature_cache)
    )
    assert again.report["metrics"] == report["metrics"] and again.report["counts"]["features_from_cache"] == 1


def test_random_init_retrieval_is_seeded(eval_store, tmp_path):
    random_r3d = FeatureOptions(backbone="r3d_18", width_multiplier=0.125, seed=3, device="cpu", size=SIZE)
    kwargs = dict(features=random_r3d, picture_queries=0, center=True)
    a = run_retrieval(eval_store, "random", out_dir=tmp_path / "a", **kwargs).report
    b = run_retrieval(eval_store, "random", out_dir=tmp_path / "b", **kwargs).report
    assert a["model"] == {
        "kind": "random",
        "backbone": "r3d_18",
        "width_multiplier": 0.125,
        "seed": 3,
        "geometry": {"frames": 16, "stride": 4, "size": 112},
    }  # the paper's clip by default
    assert a["metrics"] == b["metrics"] and a["settings"]["center"] is True
    features_a = sorted((tmp_path / "a" / "features").glob("*.npz"))
    features_b = sorted((tmp_path / "b" / "features").glob("*.npz"))
    assert [p.name for p in features_a] == [p.name for p in features_b]  # same key
    with np.load(features_a[0]) as x, np.load(features_b[0]) as y:
        np.testing.assert_array_equal(x["features"], y["features"])
    with pytest.raises(ValueError, match="no split"):
        run_retrieval(eval_store, "random", out_dir=tmp_path / "c", split="3", **kwargs)
    with pytest.raises(ValueError, match="does not exist"):
        run_retrieval(eval_store, tmp_path / "missing.pt", out_dir=tmp_path / "c")


def test_compare_puts_runs_side_by_side(tmp_path):
    common = dict(
        settings={"split": "1"}, store={"url": "s", "dataset": "ucf101", "classes": 101}, counts={"queries": 3}
    )
    write_report(
        tmp_path / "random",
        "retrieval",
        model={"kind": "random", "backbone": "r3d_26", "width_multiplier": 1.0, "seed": 0},
        metrics={"R@1": 0.1, "R@5": 0.2},
        **common,
    )
    write_report(
        tmp_path / "pretrained",
        "retrieval",
        model={"kind": "checkpoint", "path": "runs/x/last.pt"},
        metrics={"R@1": 0.4, "R@5": 0.6},
        **common,
    )
    write_report(
        tmp_path / "pretrained",
        "linear",
        model={"kind": "checkpoint", "path": "runs/x/last.pt"},
        metrics={"top1": 0.5},
        **common,
    )
    reference = tmp_path / "paper.yaml"
    reference.write_text("name: paper\nmetrics:\n  retrieval R@1: 0.35\n  finetune top1: null\n")
    reports = [
        load_report(tmp_path / "random" / "retrieval.json"),
        load_report(tmp_path / "pretrained"),
        load_report(reference),
    ]
    text = render_text(compare_table(reports), width=200)
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 4}
    assert [cell.strip() for cell in lines["retrieval R@1"].split("│")[2:5]] == ["10.0", "40.0", "35.0"]
    assert [cell.strip() for cell in lines["linear top1"].split("│")[2:5]] == ["-", "50.0", "-"]
    assert [cell.strip() for cell in lines["finetune top1"].split("│")[2:5]] == ["-", "-", "-"]
    assert "random init r3d_26" in text and "paper" in text
    with pytest.raises(ValueError):
        load_report(tmp_path / "nothing")


def test_retrieval_and_linear_on_an_extra_label_set(eval_store, tiny_checkpoint, tmp_path, feature_cache):
    from comode.evaluate.linear import run_linear

    result = run_retrieval(
        eval_store,
        tiny_checkpoint,
        out_dir=tmp_path / "texture",
        label_set="texture",
        picture_queries=1,
        features=cpu_cached(feature_cache),
    )
    report = result.report
    assert report["counts"]["features_from_cache"] == 1  # same features as the primary labels
    assert report["counts"]["unlabelled"] == 1  # h.avi has no texture label: left out, counted
    assert report["counts"]["queries"] == 3 and report["counts"]["gallery"] == 5
    assert report["settings"]["label_set"] == "texture" and report["store"]["classes"] == 2
    assert report["name"].endswith("[texture]")
    assert "[texture]" in (tmp_path / "texture" / "retrieval.txt").read_text()  # not eaten as rich markup
    # the metric uses the texture labels: recompute from the cached features
    from comode.store import open_store

    attrs = open_store(eval_store).video_attrs()
    sides = {}
    for path in feature_cache.glob("*.npz"):
        with np.load(path) as data:
            ids = [str(v) for v in data["video_ids"]]
            keep = [i for i, v in enumerate(ids) if attrs[v]["labels"]["texture"] >= 0]
            sides[len(ids)] = (data["features"][keep], [attrs[ids[i]]["labels"]["texture"] for i in keep])
    (test_x, test_y), (train_x, train_y) = sides[3], sides[6]
    expected = recall_at_k(test_x, test_y, train_x, train_y, (1, 5))
    assert (report["metrics"]["R@1"], report["metrics"]["R@5"]) == (expected[1], expected[5])
    linear = run_linear(
        eval_store,
        tiny_checkpoint,
        out_dir=tmp_path / "texture",
        label_set="texture",
        features=cpu_cached(feature_cache),
    ).report
    assert linear["counts"]["train_evaluated"] == 5 and linear["settings"]["label_set"] == "texture"
    with pytest.raises(ValueError, match="no label set 'colour'.*texture"):
        run_retrieval(
            eval_store,
            tiny_checkpoint,
            out_dir=tmp_path / "x",
            label_set="colour",
            features=FeatureOptions(size=SIZE, cache_dir=feature_cache),
        )


def test_a_real_pretraining_checkpoint_evaluates(eval_store, tmp_path):
    """Format drift guard: what `train pretrain` writes is what evaluation reads."""
    from comode.train.config import load_config
    from comode.train.loop import run_pretraining

    config = load_config(
        "configs/pretrain/tiny_cpu.yaml",
        ["max_steps=1", "data.workers=0", "data.batch_size=4", "model.backbone=r3d_18", "data.split=null"],
    )
    checkpoint = run_pretraining(config, store=eval_store, out_dir=tmp_path / "run", show_progress=False).checkpoint
    report = run_retrieval(
        eval_store,
        checkpoint,
        out_dir=tmp_path / "eval",
        picture_queries=0,
        features=FeatureOptions(device="cpu", size=SIZE),
    ).report
    assert report["model"]["step"] == 1 and report["model"]["backbone"] == "r3d_18"
    assert report["model"]["width_multiplier"] == 0.125 and report["counts"]["queries"] == 3


def test_an_evaluation_with_an_empty_side_of_the_split_says_so(tmp_path):
    """A real store whose test video has no label in the extra label set: retrieval and the
    linear probe both refuse, naming the counts, instead of scoring an empty side."""
    from comode.evaluate.linear import run_linear
    from comode.extract.datasets import load_dataset
    from comode.extract.executors import make_executor
    from comode.extract.pipeline import run_extraction
    from comode.extract.settings import ExtractSettings
    from tests.videos import translating_frames, write_video

    root = tmp_path / "videos"
    rows = ["path,split,motion,texture"]
    for i, (relative, texture) in enumerate(
        {"train/right/a.avi": "fine", "train/down/b.avi": "coarse", "test/down/c.avi": ""}.items()
    ):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / relative, translating_frames(frames=20, width=64, height=48, dx=1, dy=0, seed=i))
        rows.append(f"{relative},{relative.split('/')[0]},{relative.split('/')[1]},{texture}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    store = str(tmp_path / "s.zarr")
    assert run_extraction(load_dataset("sample", root), store, ExtractSettings(), make_executor(workers=0)).ok
    features = FeatureOptions(backbone="r3d_18", width_multiplier=0.125, device="cpu", size=SIZE)
    with pytest.raises(ValueError, match=r"2 usable train and 0 usable test videos; retrieval .* needs both"):
        run_retrieval(store, "random", out_dir=tmp_path / "r", label_set="texture", features=features)
    with pytest.raises(ValueError, match=r"2 usable train and 0 usable test videos; the linear probe needs both"):
        run_linear(store, "random", out_dir=tmp_path / "l", label_set="texture", features=features)
