"""Which pathway's feature an evaluation scores (comode.evaluate.pathway_view)."""

from __future__ import annotations

import numpy as np
import pytest

from comode.evaluate.pathway_view import backbone_pathways, pathway_view


def _two_pathway_features():
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(5, 4)) * 100.0  # the loud part
    diff = rng.normal(size=(5, 4)) * 0.01  # the quiet part
    return rgb, diff, np.concatenate([rgb, diff], axis=1).astype(np.float32)


def test_one_pathway_is_selected_alone():
    rgb, diff, features = _two_pathway_features()
    np.testing.assert_allclose(pathway_view(features, ("rgb", "diff"), "rgb"), rgb, rtol=1e-6)
    np.testing.assert_allclose(pathway_view(features, ("rgb", "diff"), "diff"), diff, rtol=1e-6)


def test_both_weighs_the_pathways_equally_whatever_their_scale():
    rgb, diff, features = _two_pathway_features()
    both = pathway_view(features, ("rgb", "diff"), "both")

    def cosines(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T

    # The dot product of the view is the mean of the two per-pathway cosines: the quiet
    # difference part counts as much as the loud RGB part.
    np.testing.assert_allclose(both @ both.T, (cosines(rgb) + cosines(diff)) / 2, atol=1e-5)
    # Plain concatenation would be the RGB cosine alone (to 1e-5): what "both" is there to avoid.
    assert np.abs(cosines(features) - cosines(rgb)).max() < 1e-5
    assert np.abs(both @ both.T - cosines(rgb)).max() > 0.05


def test_a_one_pathway_network_keeps_its_feature():
    features = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    for view in ("both", "rgb"):
        assert pathway_view(features, ("rgb",), view) is features
    with pytest.raises(ValueError, match="has only the pathways"):
        pathway_view(features, ("rgb",), "diff")
    with pytest.raises(ValueError, match="--feature must be one of"):
        pathway_view(features, ("rgb",), "motion")


def test_pathways_come_from_the_backbone_table():
    assert backbone_pathways("r3d_26_rgbdiff") == ("rgb", "diff")
    assert backbone_pathways("r3d_26_diff") == ("diff",)
    assert backbone_pathways("r3d_26") == ("rgb",)
