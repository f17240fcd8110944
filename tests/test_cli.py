"""The command line as a user runs it: exit codes, summaries, store info/validate, show."""

import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.commands import comode_command


def run(*args, timeout=300):
    return subprocess.run(comode_command(*args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory, real_dir):
    """A folder with one real clip and one broken file, extracted through the CLI."""
    root = tmp_path_factory.mktemp("cli data")
    (root / "people").mkdir()
    (root / "people" / "make up é.avi").symlink_to(real_dir / "mmaction2_apply_eye_makeup.avi")
    (root / "people" / "broken.mp4").write_bytes(b"\x00" * 1000)
    out = root / "out store.zarr"
    result = run("extract", "--dataset", "folder", "--root", root, "--out", out, "--workers", "0")
    return out, result


def test_extract_exit_code_and_summary_list_the_failure(mixed_store):
    out, result = mixed_store
    assert result.returncode == 1  # something failed, and it was recorded
    assert "1 extracted now" in result.stderr and "1 failed now" in result.stderr
    assert "people__broken.mp4" in result.stderr and "Traceback" not in result.stderr


def test_store_info_and_validate(mixed_store):
    out, _ = mixed_store
    info = run("store", "info", out)
    assert info.returncode == 0
    assert "1 complete, 1 failed" in info.stdout and "164 in complete videos" in info.stdout
    assert "people__broken.mp4" in info.stdout
    validate = run("store", "validate", out)
    assert validate.returncode == 0 and "valid" in validate.stdout


def test_validate_data_finds_a_damaged_chunk(mixed_store, tmp_path):
    """One flipped byte in a shard of a complete video: the metadata checks cannot see it,
    `validate --data` reads every chunk and names the video, the array and the checksum."""
    import shutil

    out, _ = mixed_store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(out, copy)
    assert run("store", "validate", copy, "--data").returncode == 0
    shard = next(p for p in (copy / "videos").glob("*/mvs/c/**/*") if p.is_file())
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 3] ^= 0x01
    shard.write_bytes(bytes(damaged))
    assert run("store", "validate", copy).returncode == 0  # metadata and small arrays only
    deep = run("store", "validate", copy, "--data")
    assert deep.returncode == 1 and "Traceback" not in deep.stderr
    assert "mvs data unreadable" in deep.stderr and "checksum" in deep.stderr
    assert "people__make_up" in deep.stderr and "run the same extract command again" in deep.stderr

    # The advice works: without the group, the same extract command redoes that video only.
    shutil.rmtree(copy / "videos" / shard.relative_to(copy / "videos").parts[0])
    redo = run("extract", "--dataset", "folder", "--root", out.parent, "--out", copy, "--workers", "0")
    assert "1 extracted now" in redo.stderr
    assert run("store", "validate", copy, "--data").returncode == 0


def test_show_writes_a_picture_with_motion_arrows(mixed_store, tmp_path):
    out, _ = mixed_store
    png = tmp_path / "motion.png"
    from comode.extract.datasets import safe_video_id

    result = run("show", out, safe_video_id("people/make up é.avi"), "--out", png, "--panels", "3")
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(png).convert("RGB"))
    assert picture.shape == (256 + 18, 3 * 340, 3)
    red = (picture[..., 0] == 255) & (picture[..., 1] == 40) & (picture[..., 2] == 40)
    assert red.sum() > 100  # arrows were drawn: the clip has motion
    missing = run("show", out, "no-such-video")
    assert missing.returncode == 2 and "no video 'no-such-video'" in missing.stderr


def test_bad_usage_exits_2_with_a_message(tmp_path):
    result = run("extract", "--dataset", "nope", "--root", tmp_path, "--out", tmp_path / "x.zarr")
    assert result.returncode == 2 and "choose one of folder" in result.stderr
    result = run("extract", "--root", tmp_path, "--out", tmp_path / "x.zarr", "--size", "big")
    assert result.returncode == 2 and "WIDTHxHEIGHT" in result.stderr
    result = run("store", "info", tmp_path / "missing.zarr")
    assert result.returncode == 2 and "no Zarr group" in result.stderr
