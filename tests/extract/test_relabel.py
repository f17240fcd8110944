"""Issue 24: labels are derived data.  Real tiny videos in the HMDB51 and UCF101 layouts,
extracted with real ffmpeg into real stores: when the annotations change between two runs
the store ends consistent without re-extracting, ``store validate`` names every group whose
labels disagree, and the CLI refuses absent expected annotation files and reports every
name (console, ``<store>.log``, ``dataset_report.json``, ``store info``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import root_attributes, run_extraction
from comode.extract.settings import ExtractSettings
from comode.store import create_or_open_root, open_store
from comode.store.validate import validate_store
from tests.commands import comode_command
from tests.videos import translating_frames, write_video

CLASSES = ("brush_hair", "shoot_bow", "shoot_gun", "smile")  # official HMDB51 names, sorted


def _hmdb51(root: Path) -> Path:
    """Two real 6-frame videos per class; split 1 (the first trains, the second tests)."""
    frames = translating_frames(frames=6, width=64, height=48, dx=1, dy=0)
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for name in CLASSES:
        (root / name).mkdir()
        for i in range(2):
            write_video(root / name / f"{name}_{i}_u_nm_np1_fr_goo_{i}.avi", frames)
        (splits / f"{name}_test_split1.txt").write_text(
            f"{name}_0_u_nm_np1_fr_goo_0.avi 1 \n{name}_1_u_nm_np1_fr_goo_1.avi 2 \n"
        )
    return root


@pytest.fixture(scope="module")
def partial_store(tmp_path_factory):
    """(dataset root, store) extracted while shoot_bow's split file was away, and that file."""
    root = _hmdb51(tmp_path_factory.mktemp("hmdb51"))
    away = tmp_path_factory.mktemp("away") / "shoot_bow_test_split1.txt"
    shutil.move(root / "testTrainMulti_7030_splits" / away.name, away)
    store = tmp_path_factory.mktemp("stores") / "hmdb51.zarr"
    summary = run_extraction(load_dataset("hmdb51", root), str(store), ExtractSettings(), SequentialExecutor())
    assert summary.ok and summary.completed == 8
    return root, store, away


def _copy(partial_store, tmp_path):
    root, store, away = partial_store
    shutil.copytree(root, tmp_path / "data", symlinks=True)
    shutil.copytree(store, tmp_path / "store.zarr")
    return tmp_path / "data", str(tmp_path / "store.zarr"), away


def _array_files(store: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in Path(store, "videos").rglob("*") if p.is_file() and p.name != "zarr.json"}


def test_restored_split_file_relabels_every_group_without_reextracting(partial_store, tmp_path):
    root, url, away = _copy(partial_store, tmp_path)
    before = open_store(url).video_attrs()
    assert before["shoot_bow__shoot_bow_0_u_nm_np1_fr_goo_0.avi"]["label"] == -1  # unlisted while its file was away
    arrays = _array_files(url)
    shutil.copy(away, root / "testTrainMulti_7030_splits" / away.name)
    summary = run_extraction(load_dataset("hmdb51", root), url, ExtractSettings(), SequentialExecutor())
    assert (summary.completed, summary.skipped_complete, summary.relabelled) == (0, 8, 8)
    assert _array_files(url) == arrays  # no pixel re-extracted
    store = open_store(url)
    attrs = store.video_attrs()
    assert store.classes == list(CLASSES)
    for video_id, video in attrs.items():
        assert store.classes[video["label"]] == video["class_name"] == video_id.split("__")[0], video_id
        assert video["splits"] == {"1": "train" if "_0_u_" in video_id else "test"}, video_id
    assert attrs["shoot_gun__shoot_gun_0_u_nm_np1_fr_goo_0.avi"]["label"] == 2  # what it was: no index shifted
    report = validate_store(url)
    assert report.ok, report.problems
    again = run_extraction(load_dataset("hmdb51", root), url, ExtractSettings(), SequentialExecutor())
    assert again.relabelled == 0 and again.completed == 0


def test_validate_names_every_group_whose_label_disagrees_with_the_class_list(partial_store, tmp_path):
    root, url, _ = _copy(partial_store, tmp_path)
    index = load_dataset("hmdb51", root)
    # What a run that rewrites the root's class list and leaves the groups alone makes (comode
    # before issue 24): one more class before shoot_bow, and another annotation fingerprint.
    attrs = root_attributes(index, ExtractSettings())
    attrs["dataset"]["classes"] = ["brush_hair", "cartwheel", *CLASSES[1:]]
    attrs["dataset"]["annotations"]["fingerprint"] = "sha256:" + "0" * 64
    create_or_open_root(url, root_attrs=attrs)
    report = validate_store(url)
    assert not report.ok
    disagreeing = {p.split(":")[0] for p in report.problems if "class_name says" in p}
    assert disagreeing == {
        f"videos/{c}__{c}_{i}_u_nm_np1_fr_goo_{i}.avi" for c in ("shoot_gun", "smile") for i in (0, 1)
    }
    assert "label 2 is 'shoot_bow' in the store's classes, but class_name says 'shoot_gun'" in "\n".join(
        report.problems
    )
    stale = {p.split(":")[0] for p in report.problems if "come from other annotations" in p}
    assert len(stale) == 8  # every group, by name
    result = subprocess.run(comode_command("store", "validate", url, "--no-progress"), capture_output=True, text=True)
    assert result.returncode == 1 and "class_name says 'smile'" in result.stderr
    # The same extract command makes it consistent again (its groups say what the annotations say).
    summary = run_extraction(index, url, ExtractSettings(), SequentialExecutor())
    assert summary.relabelled == 0 and validate_store(url).ok


def _ucf101(root: Path, tests_per_class: int) -> None:
    frames = translating_frames(frames=4, width=32, height=32, dx=1, dy=0)
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    train, test = [], []
    for label, name in enumerate(("ApplyEyeMakeup", "Archery"), 1):
        (root / name).mkdir()
        for group in range(1, 2 + tests_per_class):
            entry = f"{name}/v_{name}_g{group:02d}_c01.avi"
            write_video(root / entry, frames)
            (train if group == 1 else test).append((entry, label))
    (lists / "trainlist01.txt").write_text("".join(f"{e} {label}\n" for e, label in train))
    (lists / "testlist01.txt").write_text("".join(f"{e}\n" for e, _ in test))


def test_cli_refuses_an_absent_testlist_and_reports_every_name(tmp_path):
    root, out = tmp_path / "UCF 101", tmp_path / "out" / "ucf101.zarr"
    _ucf101(root, tests_per_class=4)
    (root / "ucfTrainTestlist" / "testlist01.txt").unlink()
    command = comode_command(
        "extract", "--dataset", "ucf101", "--root", root, "--out", out, "--workers", "0", "--no-progress"
    )
    refused = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "testlist01.txt (the test side of split 1)" in refused.stderr
    assert "--partial-annotations" in refused.stderr and not out.exists()
    done = subprocess.run([*command, "--partial-annotations", "--limit", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    unlisted = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in ("ApplyEyeMakeup", "Archery") for g in range(2, 6)]
    assert "8 on disk but in no annotation" in done.stderr and "... and 3 more" in done.stderr
    assert unlisted[-1] not in done.stderr  # the console shows the first few
    log = Path(f"{out}.log").read_text()
    assert all(f"ucf101 unlisted: {name}" in log for name in unlisted)  # the log has them all
    report = json.loads((out / "dataset_report.json").read_text())
    assert [item["source"] for item in report["unlisted"]] == unlisted
    assert report["incomplete"][0]["file"].endswith("testlist01.txt") and report["splits"]["1"] == {
        "train": 2,
        "test": 0,
    }
    info = subprocess.run(comode_command("store", "info", out), capture_output=True, text=True)
    assert "8 unlisted" in info.stdout and "1 expected annotation files absent" in info.stdout
    assert "testlist01.txt" in info.stdout
