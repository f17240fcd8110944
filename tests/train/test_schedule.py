"""The learning-rate schedule and what weight decay does along it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from comode.train.config import load_config
from comode.train.schedule import build_optimization, schedule_steps, weight_decay_erosion

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


@pytest.mark.parametrize("overrides", [(), ("optim.weight_decay=0.005",)])
def test_a_weight_without_gradient_shrinks_as_weight_decay_erosion_says(overrides):
    # The real optimiser and schedule of the paper's CPU configuration over 400 steps of a
    # 12,500-step run (warm-up and the start of the cosine), on a weight whose loss
    # gradient is 0: only weight decay moves it.
    config = load_config(CONFIGS / "paper_cpu.yaml", overrides)
    weight = nn.Parameter(torch.ones(4, dtype=torch.float64))
    model = nn.Module()
    model.weight = weight
    warmup_steps, total_steps = schedule_steps(config, steps_per_epoch=21)
    optimizer, scheduler = build_optimization(model, config, warmup_steps=warmup_steps, total_steps=total_steps)
    steps = 400
    for _ in range(steps):
        optimizer.zero_grad()
        (0.0 * weight.sum()).backward()
        optimizer.step()
        scheduler.step()
    predicted = weight_decay_erosion(config, steps_per_epoch=21, steps=steps)
    assert predicted < 0.999  # the steps did shrink it noticeably, so the comparison means something
    # Momentum reaches its 1 / (1 - m) gain after ~10 steps: the log-factors agree to 3 %.
    assert math.log(weight[0].item()) == pytest.approx(math.log(predicted), rel=0.03)


def test_paper_cpu_erodes_per_clip_as_the_paper_does():
    # The same number of clips seen, at full lr (after the warm-up): equal erosion.
    paper = load_config(CONFIGS / "r3d26_ucf101.yaml", ("optim.warmup_epochs=0",))
    cpu = load_config(CONFIGS / "paper_cpu.yaml", ("optim.warmup_epochs=0",))
    clips = 6400
    per_paper = weight_decay_erosion(paper, steps_per_epoch=149, steps=clips // paper.data.batch_size)
    per_cpu = weight_decay_erosion(cpu, steps_per_epoch=21, steps=clips // cpu.data.batch_size)
    assert per_cpu == pytest.approx(per_paper, rel=0.02)
