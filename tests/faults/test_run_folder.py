"""A run folder is one run's, and never a folder of someone else's (issue 25 #2, #8).

Real runs on a real store: a second run into a held ``--out`` (the holder a real process),
a folder of the user's, ``--out`` inside a store, ``train export`` over its own input, and a
checkpoint save that hits a real file size limit (``RLIMIT_FSIZE``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.train.checkpoint import LAST_CHECKPOINT, load_checkpoint, save_checkpoint
from comode.train.config import load_config
from comode.train.export import export_backbone
from comode.train.loop import run_pretraining
from comode.train.runlock import LOCK_FILE, RunFolderBusy, hold_run_folder
from tests.commands import TINY_MODEL, comode_command

# TINY_MODEL for one step: what a run must still be able to do after the checks.
TINY = [*TINY_MODEL, "max_steps=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_folder_factory) -> Path:
    """Four 80-frame videos extracted by the real pipeline: enough for one training step."""
    base = tmp_path_factory.mktemp("runfolder")
    folder = tiny_folder_factory(base / "videos", 4, frames=80, size=(96, 72))
    url = base / "store.zarr"
    assert run_extraction(load_dataset("folder", folder), str(url), ExtractSettings(), SequentialExecutor()).ok
    return url


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(store: Path, out: Path, **options):
    return run_pretraining(load_config(None, TINY), store=str(store), out_dir=out, show_progress=False, **options)


HOLDER = textwrap.dedent("""
    import sys, time
    from comode.train.runlock import hold_run_folder
    with hold_run_folder(sys.argv[1], resume=False, overwrite=False):
        print("held", flush=True)
        time.sleep(600)
""")


def test_a_second_run_into_a_held_folder_stops_at_once_with_exit_2(store, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(
            comode_command("train", "pretrain", "--store", store, "--out", out, "--no-progress", *TINY),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is in use by another run (pid {holder.pid} on " in second.stderr
        assert "Traceback" not in second.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: no stale lock to clean up by hand.
    with hold_run_folder(out, resume=False, overwrite=False):
        pass


# Finetuning called as a library (not through its command): the first call is made to wait
# inside run_finetune, its folder held, until it is killed.
FINETUNE = textwrap.dedent("""
    import sys, time
    from comode.evaluate import finetune
    if sys.argv[3] == "wait":
        def under_way(*args, **kwargs):
            print("under way", flush=True)
            time.sleep(600)
        finetune._finetune = under_way
    config = finetune.load_finetune_config(None, ["epochs=1", "workers=0", "size=32", "test_clips=1"])
    try:
        finetune.run_finetune(
            config, store=sys.argv[1], checkpoint="random", out_dir=sys.argv[2], backbone="r3d_18",
            width_multiplier=0.0625, device="cpu",
        )
    except FileExistsError as error:
        print(f"{type(error).__name__}: {error}")
""")


def test_a_second_finetuning_called_as_a_library_into_a_held_folder_is_refused(store, tmp_path):
    out = tmp_path / "finetune"
    first = subprocess.Popen(
        [sys.executable, "-c", FINETUNE, str(store), str(out), "wait"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "under way"
        second = subprocess.run(
            [sys.executable, "-c", FINETUNE, str(store), str(out), "run"], capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 0, second.stderr[-2000:]
        assert second.stdout.strip() == (
            f"RunFolderBusy: --out {out} is in use by another run (pid {first.pid} on {socket.gethostname()}); "
            "wait for it to end or choose another --out"
        )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the second run wrote nothing
    finally:
        first.kill()
        first.wait()


def test_a_thread_holding_a_folder_may_hold_it_again_another_thread_may_not(tmp_path):
    """What lets ``evaluate finetune`` hold its ``--out`` before its log, then call
    run_finetune, which holds it too."""
    out = tmp_path / "run"

    def hold(folder: Path = out) -> None:
        with hold_run_folder(folder, resume=False, overwrite=False):
            pass

    with hold_run_folder(out, resume=False, overwrite=False):
        hold(tmp_path / "." / "run")  # however spelled
        with ThreadPoolExecutor(1) as other, pytest.raises(RunFolderBusy, match=f"pid {os.getpid()} on "):
            other.submit(hold).result()
    with ThreadPoolExecutor(1) as other:
        other.submit(hold).result()  # released by the outer block


def test_a_folder_of_the_users_is_refused_unless_told_to_overwrite(store, tmp_path):
    out = tmp_path / "my_experiment"
    out.mkdir()
    (out / "config.yaml").write_text("my own config")
    (out / "metrics.jsonl").write_text('{"mine": 1}\n')
    before = _files(out)
    with pytest.raises(FileExistsError, match=r"holds files comode did not write \(config.yaml, metrics.jsonl\)"):
        _train(store, out)
    assert _files(out) == before

    summary = _train(store, out, overwrite=True)  # told to: the run goes on there
    assert summary.steps == 1 and (out / LOCK_FILE).exists()
    load_checkpoint(out / LAST_CHECKPOINT)


def test_out_inside_a_store_is_refused(store, tmp_path):
    before = _files(store)
    with pytest.raises(FileExistsError, match=r"--out .*/videos is inside the Zarr store .*store.zarr"):
        _train(store, store / "videos")
    assert _files(store) == before


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    _train(store, out)
    return out


def test_export_refuses_its_input_a_training_file_and_a_store(trained, store, tmp_path):
    checkpoint = trained / LAST_CHECKPOINT
    before = _files(trained)
    result = subprocess.run(
        comode_command("train", "export", checkpoint, checkpoint), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "export would overwrite its input" in result.stderr, result.stderr[-2000:]
    with pytest.raises(ValueError, match="is not an exported backbone"):
        export_backbone(checkpoint, trained / "config.yaml")
    with pytest.raises(FileExistsError, match="inside the Zarr store"):
        export_backbone(checkpoint, store / "videos" / "v.safetensors")
    assert _files(trained) == before and not (store / "videos" / "v.safetensors").exists()
    exported = export_backbone(checkpoint, tmp_path / "v.safetensors")
    assert export_backbone(checkpoint, exported) == exported  # an earlier export may be replaced


SAVER = textwrap.dedent("""
    import resource, signal, sys, torch
    from comode.train.checkpoint import CheckpointError, save_checkpoint
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, like a full disk's ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    try:
        save_checkpoint({"step": 2, "weights": torch.zeros(1_000_000)}, sys.argv[1])
    except CheckpointError as error:
        print(error)
""")


def test_a_checkpoint_save_on_a_full_disk_says_so_and_leaves_no_temporary(tmp_path):
    path = tmp_path / LAST_CHECKPOINT
    save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)
    before = path.read_bytes()
    result = subprocess.run([sys.executable, "-c", SAVER, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"cannot save checkpoint {path}: the disk is full" in result.stdout
    assert "free space and continue with --resume" in result.stdout.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_CHECKPOINT] and path.read_bytes() == before


def test_temporaries_of_killed_saves_are_removed_by_the_next_run_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    with hold_run_folder(out, resume=False, overwrite=False):
        pass
    (out / "last.pt.4242-0123abcd.tmp").write_bytes(b"half a checkpoint")
    (out / "last.pt.tmp").write_bytes(b"one from before temporaries had their own names")
    (out / "notes.tmp").write_text("not comode's")
    with hold_run_folder(out, resume=True, overwrite=False):
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "notes.tmp"]


# ------------------------------------------------------------------ an exported file from elsewhere


def _tampered(exported: Path, out: Path, *, metadata: dict[str, str] | None = None, nan: bool = False) -> Path:
    """``exported`` rewritten with other metadata values, or with NaN weights."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(exported), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        values = {**handle.metadata(), **(metadata or {})}
    if nan:
        tensors = {key: torch.full_like(t, float("nan")) if t.is_floating_point() else t for key, t in tensors.items()}
    save_file(tensors, str(out), metadata=values)
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width_multiplier": "64.0"}, r"metadata width_multiplier='64.0' is not a float in \[0.015625, 8\]"),
        ({"clip_size": "20000"}, r"metadata clip_size='20000' is not a int in \[1, 1024\]"),
        ({"width_multiplier": "0.125"}, r"the weights do not fit the .* its metadata describes"),
        ({"nan": True}, r"holds NaN or infinite values; refusing these weights"),
    ],
)
def test_an_exported_file_whose_metadata_or_weights_lie_is_refused(trained, tmp_path, change, message):
    from comode.train.export import load_backbone

    exported = export_backbone(trained / LAST_CHECKPOINT, tmp_path / "good.safetensors")
    load_backbone(exported)  # the untouched export loads
    nan = bool(change.pop("nan", False))
    bad = _tampered(exported, tmp_path / "bad.safetensors", metadata=change, nan=nan)
    with pytest.raises(ValueError, match=message):
        load_backbone(bad)


def test_the_run_log_says_why_a_run_stopped(tmp_path):
    from comode.store import StoreError

    out = tmp_path / "run"
    with pytest.raises(StoreError, match="no Zarr group here"):
        _train(tmp_path / "missing.zarr", out)
    assert "ERROR   comode: stopped by StoreError: " in (out / "train.log").read_text()


def test_resuming_a_checkpoint_with_missing_entries_says_which(trained, store, tmp_path):
    """The right format tag, but no optimizer state: a CheckpointError naming it, not a KeyError."""
    from comode.train.checkpoint import CheckpointError

    state = load_checkpoint(trained / LAST_CHECKPOINT)
    del state["optimizer"], state["format"]
    out = tmp_path / "run"
    with hold_run_folder(out, resume=False, overwrite=False):  # a run folder of comode's
        save_checkpoint(state, out / LAST_CHECKPOINT)
    with pytest.raises(CheckpointError, match=r"lacks optimizer: it is not a complete pretraining checkpoint"):
        _train(store, out, resume=True)
