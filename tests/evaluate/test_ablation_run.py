"""`run_ablation` end to end on the tiny labelled store: a real 1-step pretraining, retrieval
and linear probe per label set, ablation.json, and a resume that retrains nothing."""

from __future__ import annotations

import json
import math

from comode.evaluate.ablation import run_ablation

TINY = [
    "max_steps=1",
    "data.workers=0",
    "data.batch_size=4",
    "model.backbone=r3d_18",
    "data.split='1'",
    "data.subset=train",
]


def test_ablation_trains_evaluates_both_label_sets_and_resumes(eval_store, tmp_path):
    def run():
        return run_ablation(
            eval_store,
            out_dir=tmp_path,
            config="configs/pretrain/tiny_cpu.yaml",
            base_overrides=TINY,
            seeds=(0,),
            variants=("random init", "context + motion"),
            clips=3,  # every evaluation of every cell scores 3 test clips per video
        )

    cells = run()
    assert [(c.variant, c.seed) for c in cells] == [("random init", 0), ("context + motion", 0)]
    for cell in cells:
        assert set(cell.recall_at_1) == set(cell.linear_top1) == {"motion", "texture"}
        assert all(0.0 <= v <= 1.0 for v in [*cell.recall_at_1.values(), *cell.linear_top1.values()])
        # Retrieval and the linear probe share one feature cache: train + test features, once.
        assert len(list((tmp_path / cell.run_dir.rsplit("/", 1)[1] / "features").glob("*.npz"))) == 2
        retrieval = json.loads(
            (tmp_path / cell.run_dir.rsplit("/", 1)[1] / "retrieval_motion" / "retrieval.json").read_text()
        )
        assert retrieval["settings"]["clips_per_video"] == 3
    floor, method = cells
    assert math.isnan(floor.acc_context) and math.isfinite(method.acc_context) and math.isfinite(method.acc_motion)
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["settings"]["clips_per_video"] == 3
    assert [c["linear_top1"] for c in saved["cells"]] == [c.linear_top1 for c in cells]
    assert [row["variant"] for row in saved["table"]] == ["random init", "context + motion"]
    assert "linear texture" in saved["table"][1]
    report = (tmp_path / "ablation.md").read_text()  # the table and decisions, written by the library
    assert "| random init |" in report and "| context + motion |" in report

    checkpoint = tmp_path / "context+motion_seed0" / "last.pt"
    written = checkpoint.stat().st_mtime_ns
    again = run()
    assert checkpoint.stat().st_mtime_ns == written  # finished runs are not trained again
    assert [(c.recall_at_1, c.linear_top1) for c in again] == [(c.recall_at_1, c.linear_top1) for c in cells]
