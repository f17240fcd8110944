"""Training faults: a kill while checkpointing, corrupt and hostile checkpoints, and store
videos that fail to decode at training time.

(``tests/train/test_checkpoint.py`` already kills a bare ``save_checkpoint`` loop and feeds
``load_checkpoint`` corrupt files; these tests go through a real training run.)
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.train.checkpoint import LAST_CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from comode.train.config import load_config
from comode.train.loop import run_pretraining
from tests.commands import TINY_MODEL, comode_command
from tests.videos import translating_frames, write_video

# A smaller model than tests/train/test_loop.py's tiny one (these tests are about faults, not
# learning): 1/16 width, 32-px clips, batch 2, in-process loading.
TINY = TINY_MODEL


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    """4 synthetic videos (170x128, 80 frames) in 2 classes, extracted with the real pipeline."""
    root = tmp_path_factory.mktemp("videos")
    for number, (name, dx, dy) in enumerate([("right", 2, 0), ("right", 3, 1), ("down", 0, 2), ("down", 1, 3)]):
        (root / name).mkdir(exist_ok=True)
        write_video(
            root / name / f"v{number}.avi",
            translating_frames(frames=80, width=170, height=128, dx=dx, dy=dy, seed=number),
        )
    url = str(tmp_path_factory.mktemp("store") / "train.zarr")
    assert run_extraction(load_dataset("folder", root), url, ExtractSettings(), SequentialExecutor()).completed == 4
    return url


def _damage(url: str, damage: str) -> None:
    shard = Path(url) / "videos" / "right__v0.avi" / "rgb_stream" / "c" / "0"
    data = bytearray(shard.read_bytes())
    if damage == "noise":  # bit rot inside the chunk data (the shard index stays intact)
        data[100:-2000] = np.random.default_rng(0).bytes(len(data) - 2100)
        shard.write_bytes(bytes(data))
    elif damage == "truncated":
        shard.write_bytes(bytes(data[: len(data) // 3]))
    else:
        shard.unlink()


def test_a_store_video_that_fails_to_decode_is_skipped_and_counted_by_a_training_run(tmp_path, store_url):
    """One video's rgb_stream shard has noise in its chunk data: training runs on and counts it.

    (Before the store carried CRC32C checksums, this noise crashed Blosc with a RuntimeError;
    the store's checksums turn it into a ValueError, a load error.)"""
    url = str(tmp_path / "damaged.zarr")
    shutil.copytree(store_url, url)
    _damage(url, "noise")
    config = load_config(None, [*TINY, "optim.epochs=1"])
    summary = run_pretraining(config, store=url, out_dir=tmp_path / "run", show_progress=False)
    assert summary.steps == 2  # 4 videos / batch 2: no step lost
    assert summary.skipped_videos >= 1  # the damaged video, replaced by another one
    assert math.isfinite(summary.final["loss"])
    load_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)


@pytest.mark.parametrize("damage", ["noise", "truncated", "deleted"])
def test_every_kind_of_chunk_damage_is_a_skip_not_a_crash(tmp_path, store_url, damage):
    from comode.data.dataset import PretrainDataset

    url = str(tmp_path / "damaged.zarr")
    shutil.copytree(store_url, url)
    _damage(url, damage)
    dataset = PretrainDataset(url)
    for index in range(len(dataset)):
        assert dataset[index]["video_index"] != dataset.video_ids.index("right__v0.avi")
    assert list(dataset.failures) == ["right__v0.avi"]


TRAINER = textwrap.dedent("""
    import sys
    from comode.train.config import load_config
    from comode.train.loop import run_pretraining
    store, out, resume, *overrides = sys.argv[1:]
    run_pretraining(load_config(None, overrides), store=store, out_dir=out, resume=resume == "1",
                    show_progress=False)
""")


def _in_flight(out) -> bool:
    """Whether a write of last.pt is under way (or was cut short): its temporary file exists."""
    return any(out.glob(LAST_CHECKPOINT + ".*.tmp"))


def test_sigkill_of_a_training_run_while_it_checkpoints_leaves_a_loadable_checkpoint(tmp_path, store_url):
    """Kill a real run right when a checkpoint write is in flight (its ``last.pt.<pid>-<random>.tmp`` exists), at
    seeded random moments; last.pt always loads and --resume finishes the run."""
    overrides = [*TINY, "optim.epochs=3", "save_every_steps=1"]
    out = tmp_path / "run"
    rng = random.Random(1234)
    kills = []
    for trial in range(2):
        process = subprocess.Popen(
            [sys.executable, "-c", TRAINER, store_url, str(out), "1" if trial else "0", *overrides],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            # Wait until a checkpoint exists, then for a seeded number of further writes.
            skip_writes, seen = rng.randint(0, 1), 0
            in_tmp = False
            while time.monotonic() < deadline and process.poll() is None:
                if _in_flight(out):
                    if not in_tmp and (out / LAST_CHECKPOINT).exists():
                        seen += 1
                    in_tmp = True
                    if seen > skip_writes:
                        break
                else:
                    in_tmp = False
                time.sleep(0.0005)
        finally:
            process.send_signal(signal.SIGKILL)
            _, stderr = process.communicate()
        assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        state = load_checkpoint(out / LAST_CHECKPOINT)
        kills.append((skip_writes, state["step"], _in_flight(out)))
    print("kills (writes skipped, step in last.pt, .tmp left behind):", kills)
    assert any(tmp_left for _, _, tmp_left in kills), "no kill landed inside a checkpoint write"
    summary = run_pretraining(
        load_config(None, overrides), store=store_url, out_dir=out, resume=True, show_progress=False
    )
    assert summary.steps == 6 and summary.steps_this_run < 6
    assert load_checkpoint(out / LAST_CHECKPOINT)["step"] == 6


@pytest.mark.parametrize("signum, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_sigterm_or_ctrl_c_finishes_the_step_saves_and_exits_128_plus_the_signal(tmp_path, store_url, signum, to_group):
    """A scheduler's SIGTERM (to the main process) or a terminal's Ctrl-C (to the whole process
    group, the DataLoader worker included): the run saves the step it stopped at and exits
    with 128 + the signal, and --resume goes on from there.  save_every_steps is larger than
    the run, so without the stop there would be no last.pt at all."""
    overrides = [*TINY, "optim.epochs=500", "save_every_steps=100000", "data.workers=1"]
    out = tmp_path / "run"
    command = comode_command("train", "pretrain", "--store", store_url, "--out", out, "--no-progress", *overrides)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        metrics = out / "metrics.jsonl"
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        os.killpg(process.pid, signum) if to_group else process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    output = (stdout + stderr).decode()
    assert process.returncode == 128 + signum, output[-2000:]
    steps_logged = len((out / "metrics.jsonl").read_text().splitlines())
    assert load_checkpoint(out / LAST_CHECKPOINT)["step"] == steps_logged >= 3
    assert f"stopped by {signal.Signals(signum).name} after step {steps_logged}" in (out / "train.log").read_text()
    assert "--resume" in output and "Traceback" not in output
    resumed = run_pretraining(
        load_config(None, [*overrides, f"max_steps={steps_logged + 1}"]),
        store=store_url,
        out_dir=out,
        resume=True,
        show_progress=False,
    )
    assert resumed.steps == steps_logged + 1 and resumed.steps_this_run == 1


class _RunsCode:
    """Unpickling this runs ``touch <marker>``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _started_run(tmp_path, store_url) -> tuple[Path, list[str]]:
    """A run stopped after 2 of its 4 steps (max_steps), and the overrides that finish it."""
    overrides = [*TINY, "optim.epochs=2"]
    out = tmp_path / "run"
    run_pretraining(load_config(None, [*overrides, "max_steps=2"]), store=store_url, out_dir=out, show_progress=False)
    return out, overrides


def test_resume_refuses_a_corrupt_or_hostile_checkpoint_with_a_clear_message(tmp_path, store_url):
    out, overrides = _started_run(tmp_path, store_url)
    last = out / LAST_CHECKPOINT
    good = last.read_bytes()
    config = load_config(None, overrides)

    last.write_bytes(good[: len(good) // 2])  # a half-copied file
    with pytest.raises(CheckpointError, match=rf"checkpoint {last} is truncated or corrupt"):
        run_pretraining(config, store=store_url, out_dir=out, resume=True, show_progress=False)

    # Bit rot: one flipped bit inside a tensor's bytes.  torch.load alone loads such a file
    # without complaint (the zip CRCs are not checked); load_checkpoint checks them.
    with __import__("zipfile").ZipFile(__import__("io").BytesIO(good)) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)  # the largest tensor record
        name_length, extra_length = struct.unpack_from("<HH", good, member.header_offset + 26)  # local header
        data_offset = member.header_offset + 30 + name_length + extra_length
    flipped = bytearray(good)
    flipped[data_offset + member.file_size // 2] ^= 0x01
    last.write_bytes(bytes(flipped))
    torch.load(last, weights_only=True)  # what the unchecked load would accept
    with pytest.raises(CheckpointError, match=rf"checkpoint {last} is corrupt: the CRC-32 of its record"):
        run_pretraining(config, store=store_url, out_dir=out, resume=True, show_progress=False)

    marker = tmp_path / "code-was-run"
    state = torch.load(__import__("io").BytesIO(good), weights_only=True)
    state["model"]["hostile"] = _RunsCode(marker)
    torch.save(state, last)
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain values"):
        run_pretraining(config, store=store_url, out_dir=out, resume=True, show_progress=False)
    assert not marker.exists(), "loading a checkpoint executed pickled code"
    # The same file under plain torch.load(weights_only=False) would have run it: the test is real.
    torch.load(last, weights_only=False)
    assert marker.exists()

    last.write_bytes(good)  # the intact checkpoint still resumes
    summary = run_pretraining(config, store=store_url, out_dir=out, resume=True, show_progress=False)
    assert summary.steps == 4 and summary.steps_this_run == 2


def test_a_killed_save_never_replaces_the_previous_checkpoint_in_a_run_directory(tmp_path):
    """A save killed after writing its .tmp but before the rename: last.pt is the old one."""
    save_checkpoint({"step": 1, "weights": torch.ones(3)}, tmp_path / LAST_CHECKPOINT)
    code = textwrap.dedent(f"""
        import os, signal
        from comode.train import checkpoint
        real_replace = os.replace
        def die(*args):  # killed exactly between the fsync of the .tmp and the rename
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.os.replace = die
        import torch
        checkpoint.save_checkpoint({{"step": 2, "weights": torch.zeros(3)}}, {str(tmp_path / LAST_CHECKPOINT)!r})
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert _in_flight(tmp_path)
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["step"] == 1
