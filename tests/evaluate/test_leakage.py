"""Leakage probes: the chance band, the probe's verdicts on features with and without the
label, and the whole command on a real store."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from comode.evaluate.leakage import _probe, chance_band, format_probes, run_leakage_probes
from tests.commands import comode_command


def test_chance_band_is_the_binomial_central_interval():
    low, high = chance_band(6, 120)  # p = 1/6: 20 expected hits of 120
    assert (round(low * 120), round(high * 120)) == (12, 28)
    assert chance_band(2, 1000)[0] == pytest.approx(0.469, abs=0.002)


def test_a_signal_that_carries_the_label_leaks_and_one_that_does_not_is_at_chance():
    rng = np.random.default_rng(0)
    train_y, test_y = rng.integers(0, 4, 200), rng.integers(0, 4, 120)
    noise = lambda n: rng.normal(size=(n, 10)).astype(np.float32)  # noqa: E731
    carrying = lambda y: noise(len(y)) + 2.0 * np.eye(10, dtype=np.float32)[y]  # noqa: E731
    leak = _probe("I-frame", "motion", False, carrying(train_y), carrying(test_y), train_y, test_y, 4)
    assert leak.top1 > 0.8 and leak.verdict.startswith("LEAKS")
    blind = _probe("I-frame", "motion", False, noise(200), noise(120), train_y, test_y, 4)
    assert blind.verdict == "at chance", blind
    control = _probe("MV statistics", "motion", True, noise(200), noise(120), train_y, test_y, 4)
    assert control.verdict.startswith("does NOT find it")  # a control that finds nothing is reported
    assert "LEAKS" in format_probes([leak, blind])


def test_probes_on_a_store_and_the_command(eval_store):
    results = run_leakage_probes(eval_store, scene="texture")
    assert [(r.signal, r.label_set, r.should_leak) for r in results] == [
        ("I-frame", "motion", False),
        ("MV statistics", "texture", False),
        ("I-frame", "texture", True),
        ("MV statistics", "motion", True),
    ]
    assert all(r.tests == 3 or r.tests == 2 for r in results)  # one test video has no texture label
    with pytest.raises(ValueError, match="no label set 'scene'"):
        run_leakage_probes(eval_store)
    done = subprocess.run(
        comode_command("evaluate", "leakage", "--store", eval_store, "--scene", "texture"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1) and "I-frame -> motion" in done.stdout, done.stderr
    bad = subprocess.run(
        comode_command("evaluate", "leakage", "--store", eval_store), capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "no label set 'scene'" in bad.stderr
