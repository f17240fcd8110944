"""The ablation table: mean and spread over seeds, '-' for metrics a variant does not have."""

from __future__ import annotations

import math

import pytest

from comode.evaluate.ablation import VARIANTS, variants_for
from comode.evaluate.ablation_table import AblationCell, ablation_table_rows, decide, format_decisions, format_table


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
    from comode.train.config import load_config

    base = load_config("configs/pretrain/demo_cpu.yaml")
    variants = variants_for(base)
    assert variants["context + motion"] == () and variants["random init"] is None
    assert variants["random init (RGB)"] is None
    for name, overrides in variants.items():
        if name not in ("random init", "random init (RGB)", "context + motion"):
            # One switch; a one-pathway backbone also takes back the split of the tasks over pathways.
            assert overrides[1:] in ((), ("model.pathway_tasks=shared",)), name
            config = load_config("configs/pretrain/demo_cpu.yaml", list(overrides))  # a valid config ...
            assert config != base, name  # ... that differs
    # One variant per departure value other than the base's, named by its override.
    assert "model.motion_predictor=transformer" in variants and "model.motion_predictor=conv" not in variants
    assert "model.backbone=r3d_26" in variants and "model.backbone=r3d_26_rgbdiff" in variants
    assert variants["model.backbone=r3d_26"] == ("model.backbone=r3d_26", "model.pathway_tasks=shared")
    assert variants["model.backbone=r3d_26_rgbdiff"] == ("model.backbone=r3d_26_rgbdiff",)
    assert "model.pathway_tasks=shared" in variants
    # A one-pathway base has no split variant: its tasks cannot read different pathways.
    assert "model.pathway_tasks=split" not in variants_for(load_config("configs/pretrain/r3d26_ucf101.yaml"))
    assert "loss.alpha=0.25" in variants and "loss.alpha=0.5" not in variants
    assert set(VARIANTS) <= set(variants)


def test_decisions_follow_the_two_standard_error_rule():
    rows = [
        {"variant": "random init", "seeds": 3, "R@1 motion": (0.20, 0.03), "linear motion": (0.40, 0.05)},
        {"variant": "context + motion", "seeds": 3, "R@1 motion": (0.40, 0.03), "linear motion": (0.42, 0.05)},
        {
            "variant": "model.motion_predictor=transformer",
            "seeds": 3,
            "R@1 motion": (0.50, 0.03),
            "linear motion": (0.42, 0.05),
        },
    ]
    verdicts = {(d.question, d.metric): d.verdict for d in decide(rows)}
    assert verdicts[("pretraining beats random init on motion", "R@1 motion")] == "yes"  # +20, 2 SE 4.9
    assert verdicts[("pretraining beats random init on motion", "linear motion")] == "not decided"  # +2, 2 SE 8.2
    assert verdicts[("the base configuration beats model.motion_predictor=transformer", "R@1 motion")] == "no, reversed"
    assert "| pretraining beats random init on motion | R@1 motion | +20.0 | 4.9 | yes |" in format_decisions(
        decide(rows)
    )


def test_a_single_seed_is_not_taken_as_exact():
    # `make demo`: one pretraining seed against 3 random-init seeds.  The one run's std reads
    # 0; the rule takes the floor's spread for it instead of none.
    floor = {"variant": "random init", "seeds": 3, "R@1 motion": (0.20, 0.06)}
    one = {"variant": "context + motion", "seeds": 1, "R@1 motion": (0.30, 0.0)}
    (decision,) = decide([floor, one])
    # 2 SE = 2 x sqrt(0.06^2 / 1 + 0.06^2 / 3) = 13.9 points > +10: not decided (with the
    # single run counted exact, 2 SE would be 6.9 and the verdict "yes").
    assert decision.standard_error == pytest.approx(((0.06**2) + 0.06**2 / 3) ** 0.5)
    assert decision.verdict == "not decided (1 seed: the other side's spread)"
    (both_single,) = decide([{**floor, "seeds": 1, "R@1 motion": (0.20, 0.0)}, one])
    assert both_single.verdict == "not decided (1 seed each)"
    assert "| +10.0 | - | not decided (1 seed each) |" in format_decisions([both_single])
