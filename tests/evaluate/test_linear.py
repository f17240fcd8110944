"""Linear probe: learns separable features; end to end on a store with a report."""

import json

import numpy as np
import torch

from comode.evaluate.accuracy import top_k_accuracy
from comode.evaluate.linear import fit_linear_probe, run_linear
from comode.evaluate.options import FeatureOptions


def test_top_k_accuracy_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
    labels = torch.tensor([1, 2, 0])
    # row 0: top1 hit; row 1: label 2 ranked 2nd; row 2: label 0 ties with 1 -> 0 ranks 2nd
    assert top_k_accuracy(scores, labels, ks=(1, 2, 3)) == {"top1": 1 / 3, "top2": 1.0, "top3": 1.0}


def test_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 32)) * 3
    labels = np.repeat(np.arange(5), 40)
    features = (centres[labels] + rng.normal(size=(200, 32))).astype(np.float32)
    layer, mean, std = fit_linear_probe(features[::2], labels[::2], num_classes=5)
    with torch.no_grad():
        predicted = layer((torch.as_tensor(features[1::2]) - mean) / std).argmax(dim=1).numpy()
    assert (predicted == labels[1::2]).mean() > 0.95
    # shuffled labels cannot be predicted on held-out data
    shuffled = rng.permutation(labels)
    layer, mean, std = fit_linear_probe(features[::2], shuffled[::2], num_classes=5)
    with torch.no_grad():
        predicted = layer((torch.as_tensor(features[1::2]) - mean) / std).argmax(dim=1).numpy()
    assert (predicted == shuffled[1::2]).mean() < 0.5


def test_run_linear_end_to_end(eval_store, tiny_checkpoint, tmp_path, feature_cache):
    result = run_linear(
        eval_store,
        tiny_checkpoint,
        out_dir=tmp_path,
        features=FeatureOptions(device="cpu", size=64, cache_dir=feature_cache),
    )
    report = json.loads((tmp_path / "linear.json").read_text())
    assert report == result.report and report["kind"] == "linear"
    assert set(report["metrics"]) == {"top1", "top5", "train_top1"}
    assert report["metrics"]["top5"] == 1.0  # 2 classes: always
    # 6 training videos in 64 feature dimensions are linearly separable: the fit must find it.
    assert report["metrics"]["train_top1"] == 1.0
    assert report["metrics"]["top1"] * 3 in (0, 1, 2, 3)  # a share of the 3 test videos
    assert report["counts"]["test_evaluated"] == 3 and report["counts"]["train_evaluated"] == 6
    assert report["model"]["sha256"] and report["model"]["backbone"] == "r3d_18"
    text = (tmp_path / "linear.txt").read_text()
    assert "top1 (%)" in text and "top5 (%)" in text
