"""Checkpoints: atomic writes (even under SIGKILL), refusal of corrupt files, weights_only loads."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from comode.train import checkpoint as checkpoint_module
from comode.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    capture_rng_state,
    epoch_checkpoint_name,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _state(value: float) -> dict:
    model = torch.nn.Linear(4, 3)
    torch.nn.init.constant_(model.weight, value)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": 7,
        "epoch": 1,
        "config": {"optim": {"lr_per_sample": 0.0005, "grad_clip_norm": None}},
        "rng": capture_rng_state(),
    }


def test_round_trip_loads_with_weights_only(tmp_path):
    path = save_checkpoint(_state(1.0), tmp_path / "last.pt")
    assert not (tmp_path / "last.pt.tmp").exists()
    raw = torch.load(path, weights_only=True)  # plain torch, no comode code needed
    assert raw["format"] == CHECKPOINT_FORMAT and raw["step"] == 7
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["model"]["weight"], _state(1.0)["model"]["weight"])
    assert loaded["optimizer"]["param_groups"][0]["nesterov"] is True
    assert loaded["config"]["optim"]["grad_clip_norm"] is None
    assert epoch_checkpoint_name(7) == "epoch_007.pt"


def test_rng_states_round_trip():
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), np.random.randn())[:3] == expected[:3]
    torch.testing.assert_close(torch.rand(3), expected[3])


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), torch.rand(2))
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), float(np.random.rand())) == expected[:2]
    torch.testing.assert_close(torch.rand(2), expected[2])


def test_a_leftover_tmp_file_is_never_read_and_the_next_run_removes_it(tmp_path):
    from comode.train.runlock import hold_run_folder

    save_checkpoint(_state(1.0), tmp_path / "last.pt")
    leftover = tmp_path / "last.pt.4242-0123abcd.tmp"  # a killed save's (each save has its own name)
    leftover.write_bytes(b"half of a checkpoint")
    assert load_checkpoint(tmp_path / "last.pt")["model"]["weight"].flatten()[0] != 2.0
    save_checkpoint(_state(2.0), tmp_path / "last.pt")
    with hold_run_folder(tmp_path, resume=True, overwrite=False):  # what the next run in the folder does first
        assert not leftover.exists()
    loaded = load_checkpoint(tmp_path / "last.pt")["model"]["weight"]
    torch.testing.assert_close(loaded, _state(2.0)["model"]["weight"])


def test_a_crash_during_the_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(_state(1.0), tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()

    def dies_halfway(obj, handle):
        handle.write(b"PK\x03\x04 the first bytes of a zip and no more")
        raise KeyboardInterrupt  # like Ctrl-C or a kill in the middle of torch.save

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(2.0), tmp_path / "last.pt")
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    load_checkpoint(tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the half-written temporary is removed


WRITER = textwrap.dedent("""
    import sys, torch
    from comode.train.checkpoint import save_checkpoint
    path, ready = sys.argv[1], sys.argv[2]
    n = 0
    while True:
        n += 1
        save_checkpoint({"n": n, "weights": torch.full((4_000_000,), float(n))}, path)  # 16 MB
        open(ready, "w").write(str(n))
""")


def test_sigkill_in_the_middle_of_saving_leaves_a_loadable_last_checkpoint(tmp_path):
    path, ready = tmp_path / "last.pt", tmp_path / "saves"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(ready)])
    try:
        deadline = time.monotonic() + 60

        def saves() -> int:  # the writer rewrites the file: it may be read empty in between
            text = ready.read_text().strip() if ready.exists() else ""
            return int(text) if text.isdigit() else 0

        while saves() < 3:
            assert time.monotonic() < deadline and writer.poll() is None, "the writer never saved 3 checkpoints"
            time.sleep(0.01)
        time.sleep(0.013)  # land somewhere inside a later save
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    state = load_checkpoint(path)
    assert state["n"] >= 3 and bool((state["weights"] == state["n"]).all())


def test_corrupt_or_foreign_files_are_refused_with_a_message_naming_them(tmp_path):
    good = save_checkpoint(_state(1.0), tmp_path / "good.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt is truncated or corrupt"):
        load_checkpoint(truncated)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match=r"garbage\.pt is truncated or corrupt"):
        load_checkpoint(garbage)

    pickled_code = tmp_path / "code.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _Arbitrary()}, pickled_code)
    with pytest.raises(CheckpointError, match=r"code\.pt holds objects other than tensors"):
        load_checkpoint(pickled_code)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match=rf"foreign\.pt is not a {CHECKPOINT_FORMAT} checkpoint"):
        load_checkpoint(foreign)

    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


class _Arbitrary:
    """Any class: unpickling it would mean running code chosen by the file."""
