"""Learning curves of a run folder (comode.train.curves) and `comode plot metrics`."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
from PIL import Image

from comode.train.curves import (
    comparison_rows,
    draw_curves,
    first_left_at,
    leaves_blind_level,
    milestone_rows,
    read_curves,
)
from tests.commands import comode_command

BLIND_MOTION, BLIND_CONTEXT = 1 / 11, 1 / 8


def _write_run(folder, motion_accuracy, *, batch=8, steps=1000, backbone="r3d_26", workers=1):
    """A run folder as `train pretrain` writes it: config.yaml and one record per step."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        f"model:\n  backbone: {backbone}\ndata:\n  batch_size: {batch}\n  workers: {workers}\n"
    )
    records = []
    for step in range(1, steps + 1):
        acc = motion_accuracy(step)
        records.append(
            {
                "step": step,
                "acc_context": 0.5,
                "blind_acc_context": BLIND_CONTEXT,
                "loss_context": 1.0,
                "blind_loss_context": math.log(8),
                "acc_motion": acc,
                "blind_acc_motion": BLIND_MOTION,
                # a loss that falls as accuracy rises, null (a non-finite number) once
                "loss_motion": None if step == 7 else math.log(11) * (1 - acc),
                "blind_loss_motion": math.log(11),
            }
        )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_milestones_average_the_window_before_them(tmp_path):
    run = _write_run(tmp_path / "run", lambda step: 0.0 if step <= 500 else 0.4)
    curves = read_curves(run)
    assert curves.clips[-1] == 8000
    first, second, unreached = milestone_rows(curves, at=[4000, 8000, 20000], window_clips=800)
    assert first.reached and first.values["acc_motion"] == 0.0  # steps 401-500
    assert second.values["acc_motion"] == pytest.approx(0.4)  # steps 901-1000
    assert second.values["blind_acc_motion"] == pytest.approx(BLIND_MOTION)
    assert not unreached.reached and unreached.values == second.values  # the last window, flagged


def test_the_verdict_needs_twice_the_blind_accuracy_and_a_lower_loss(tmp_path):
    blind = read_curves(_write_run(tmp_path / "blind", lambda step: BLIND_MOTION))
    learned = read_curves(_write_run(tmp_path / "learned", lambda step: 0.3))
    left, reason = leaves_blind_level(blind, window_clips=800)
    assert not left and "still at the blind level" in reason and "1.00x" in reason
    left, reason = leaves_blind_level(learned, window_clips=800)
    assert left and "3.30x" in reason


def test_first_left_at_is_the_first_window_that_meets_the_rule(tmp_path):
    # Blind for 500 steps, then 0.3 (3.3x): an 800-clip window (100 steps) averages
    # blind + (0.3 - blind) * k / 100 after k learned steps, so it reaches 2x blind at
    # k = 44 (0.0909 <= 0.2091 * k / 100); its loss margin holds by then too.  The expected
    # step is also found by a plain loop over the windows, with the rule written out.
    run = read_curves(_write_run(tmp_path / "run", lambda step: BLIND_MOTION if step <= 500 else 0.3))
    expected = next(
        step * 8
        for step in range(100, 1001)
        if sum(BLIND_MOTION if s <= 500 else 0.3 for s in range(step - 99, step + 1)) / 100 >= 2 * BLIND_MOTION
        and sum(math.log(11) * (1 - (BLIND_MOTION if s <= 500 else 0.3)) for s in range(step - 99, step + 1) if s != 7)
        / len([s for s in range(step - 99, step + 1) if s != 7])
        <= math.log(11) - 0.05
    )
    assert first_left_at(run, window_clips=800) == expected == 544 * 8
    left, reason = leaves_blind_level(run, window_clips=800)
    assert left and f"first met over the 800 clips before {544 * 8:,}" in reason
    assert (
        first_left_at(read_curves(_write_run(tmp_path / "blind", lambda step: BLIND_MOTION)), window_clips=800) is None
    )


def test_plot_metrics_draws_and_prints_the_table(tmp_path):
    run = _write_run(tmp_path / "run", lambda step: min(0.5, step / 2000))
    result = subprocess.run(
        comode_command("plot", "metrics", run, "--at", "4000,8000", "--window", "800"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "motion: acc 47.5 % = 5.23x its blind 9.1 %" in result.stdout
    with Image.open(run / "curves.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 500


def test_plot_metrics_of_a_folder_without_metrics_says_so(tmp_path):
    result = subprocess.run(comode_command("plot", "metrics", tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "has no metrics.jsonl records" in result.stderr


def test_draw_curves_writes_where_asked(tmp_path):
    curves = read_curves(_write_run(tmp_path / "run", lambda step: 0.2, steps=50))
    out = draw_curves(curves, tmp_path / "pictures" / "c.png", smooth_clips=80)
    assert out.is_file() and out.stat().st_size > 1000


def test_a_comparison_judges_every_run_at_the_same_budget_and_names_what_differs(tmp_path):
    # The reference stays blind; the other run leaves at step 500 (4,000 clips) and runs
    # twice as long: judged at the reference's 8,000 clips, not at its own end.
    base = read_curves(_write_run(tmp_path / "base", lambda step: BLIND_MOTION))
    longer = read_curves(
        _write_run(tmp_path / "diff", lambda step: 0.3 if 500 < step <= 1000 else BLIND_MOTION, steps=2000, workers=4)
    )
    reference, other = comparison_rows([base, longer], window_clips=800)
    assert reference.clips == other.clips == 8000
    assert not reference.left["motion"] and reference.left["context"]
    assert other.left["motion"] and other.values["acc_motion"] == pytest.approx(0.3)
    assert reference.differences == []
    assert other.differences == []  # data.workers is bookkeeping: not a difference that is learned
    moved = read_curves(_write_run(tmp_path / "moved", lambda step: 0.3, backbone="r3d_26_diff"))
    _, third = comparison_rows([base, moved], at_clips=4000, window_clips=800)
    assert third.clips == 4000 and third.differences == ["model.backbone: 'r3d_26' -> 'r3d_26_diff'"]


def test_plot_compare_prints_one_row_per_run_and_draws(tmp_path):
    base = _write_run(tmp_path / "base", lambda step: BLIND_MOTION)
    diff = _write_run(tmp_path / "diff", lambda step: 0.3, backbone="r3d_26_diff")
    out = tmp_path / "compare.png"
    result = subprocess.run(
        comode_command("plot", "compare", base, diff, "--window", "800", "--out", out),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stderr
    assert "30.0 / 9.1 (left)" in result.stdout and "9.1 / 9.1 " in result.stdout
    assert "model.backbone: 'r3d_26' -> 'r3d_26_diff'" in result.stdout
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size[0] > 500
