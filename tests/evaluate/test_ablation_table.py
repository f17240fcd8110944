"""The ablation table: mean and spread over seeds, '-' for metrics a variant does not have."""

from __future__ import annotations

import math

import pytest

from comode.evaluate.ablation import VARIANTS, AblationCell, ablation_table_rows, format_table


def test_rows_average_over_seeds_and_keep_variant_order():
    cells = [
        AblationCell("random init", 0, {"motion": 0.2, "scene": 0.9}),
        AblationCell("random init", 1, {"motion": 0.4, "scene": 0.7}),
        AblationCell("context + motion", 0, {"motion": 0.6, "scene": 0.8}, acc_context=0.5, acc_motion=0.1),
        AblationCell("context + motion", 1, {"motion": 0.8, "scene": 0.8}, acc_context=0.7, acc_motion=0.3),
    ]
    rows = ablation_table_rows(cells)
    assert [r["variant"] for r in rows] == ["random init", "context + motion"]
    random_row, method_row = rows
    assert random_row["R@1 motion"] == pytest.approx((0.3, math.sqrt(0.02)))  # sample std of 0.2, 0.4
    assert method_row["R@1 scene"] == pytest.approx((0.8, 0.0))
    assert math.isnan(random_row["acc_motion"][0]) and method_row["acc_motion"] == pytest.approx((0.2, math.sqrt(0.02)))
    text = format_table(rows)
    assert "| random init | 2 | 30.0 ± 14.1 | 80.0 ± 14.1 | - | - |" in text
    assert "| context + motion | 2 | 70.0 ± 14.1 | 80.0 ± 0.0 | 60.0 ± 14.1 | 20.0 ± 14.1 |" in text


def test_every_variant_but_the_floor_changes_one_switch_of_the_method():
    method = VARIANTS["context + motion"]
    assert method == [] and VARIANTS["random init"] is None
    for name, overrides in VARIANTS.items():
        if name not in ("random init", "context + motion"):
            assert len(overrides) == 1, name
