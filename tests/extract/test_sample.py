"""The built-in sample dataset: deterministic, balanced labels and stratified splits, and
motion that the extracted motion vectors actually show (direction per pattern, coverage)."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
from collections import Counter

import numpy as np
import pytest

from comode.extract.datasets import load_dataset
from comode.extract.executors import SequentialExecutor
from comode.extract.pipeline import run_extraction
from comode.extract.settings import ExtractSettings
from comode.sampleset import (
    MOTIONS,
    VELOCITIES_FILE,
    SampleSpec,
    clip_velocities,
    generate_sample,
    make_clip,
    mv_block_coverage,
    near_duplicate_share,
    object_centre,
    plan_clips,
    render_clip,
)
from comode.store import open_store
from comode.store.validate import validate_store
from tests.commands import comode_command

# Small enough for 2 busy cores: 6 motions x 2 scenes x 1 clip of 36 frames per split side.
TINY = SampleSpec(videos_per_class=4, frames=36, scenes=("cat", "coffee"))


def test_plan_is_balanced_stratified_and_a_function_of_the_spec():
    spec = SampleSpec()
    clips = plan_clips(spec)
    assert len(clips) == 6 * 48 and clips == plan_clips(spec)
    cells = Counter((c.motion, c.scene) for c in clips)
    assert set(cells.values()) == {12}  # every (motion, scene) pair alike
    tests = Counter((c.motion, c.scene) for c in clips if c.split == "test")
    assert set(tests.values()) == {5} and len(tests) == len(cells)  # 5 of 12 test in every cell
    assert sum(tests.values()) >= 100  # enough queries to see a few points
    assert len({c.path for c in clips}) == len(clips)
    assert all(c.path == f"{c.split}/{c.motion}/{c.scene}_{c.motion}_{c.name[-3:]}.mp4" for c in clips)
    assert all(c.camera_velocity == (0.0, 0.0) for c in clips)  # a static camera by default
    # Nuisance variables do not follow the labels: object counts vary inside a cell and are
    # distributed alike in every motion class (placement does not depend on the pattern).
    counts = {m: Counter(len(c.objects) for c in clips if c.motion == m) for m in MOTIONS}
    assert all(len(counts[m]) > 1 for m in MOTIONS)
    means = [sum(k * n for k, n in counts[m].items()) / 48 for m in MOTIONS]
    assert max(means) - min(means) < 0.35
    other = plan_clips(dataclasses.replace(spec, seed=1))
    assert other[0].objects != clips[0].objects


def test_same_seed_same_frames_whatever_else_is_generated():
    a = make_clip(TINY, "pulse", "cat", 0, "train")
    b = make_clip(
        dataclasses.replace(TINY, videos_per_class=40, scenes=("cat", "rocket", "coffee")), "pulse", "cat", 0, "train"
    )
    frames = render_clip(a)
    assert frames.shape == (36, 128, 170, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, render_clip(b))
    np.testing.assert_array_equal(frames, render_clip(a))
    c = make_clip(dataclasses.replace(TINY, seed=7), "pulse", "cat", 0, "train")
    assert not np.array_equal(frames, render_clip(c))
    assert frames.std() > 20  # a photo, not flat colour


def test_every_pattern_changes_its_velocity_and_no_two_windows_repeat():
    for motion in MOTIONS:
        clip = make_clip(SampleSpec(), motion, "cat", 1, "train")
        velocities = clip_velocities(clip)  # (T, objects, 3)
        assert velocities.shape == (96, len(clip.objects), 3)
        radius = np.array([o.radius for o in clip.objects])
        # px/frame: the rim's growth for a pulse, the centre's displacement (as x + iy) otherwise.
        motion_of = (
            (velocities[:, :, 2] - 1) * radius if motion == "pulse" else velocities[:, :, 0] + 1j * velocities[:, :, 1]
        )
        # Time-varying: the motion of the first 8-frame window differs from that 16 frames later.
        assert np.abs(motion_of[1:9] - motion_of[17:25]).max() > 0.3, motion
        # The recorded velocities are the centre's frame-to-frame displacement.
        obj = clip.objects[0]
        (x0, y0, s0), (x1, y1, s1) = object_centre(clip, obj, 40), object_centre(clip, obj, 41)
        np.testing.assert_allclose(velocities[41, 0], [x1 - x0, y1 - y0, s1 / s0], rtol=1e-5, atol=1e-5)
    assert near_duplicate_share(plan_clips(SampleSpec(videos_per_class=8, scenes=("cat",)))) < 0.05


def test_near_copies_are_measured_on_a_pattern_that_repeats():
    # Without modulation and with an 8-frame period, every window a multiple of 8 frames away
    # from the positive moves exactly like it (1 in 8 of the candidate windows): the measure
    # must see that, and see none in the real pattern.
    clip = make_clip(SampleSpec(), "oscillate_x", "cat", 1, "train")
    periodic = tuple(dataclasses.replace(o, period=8.0, depth=0.0) for o in clip.objects)
    repeating = dataclasses.replace(clip, objects=periodic)
    assert near_duplicate_share([repeating], draws=40) > 0.08
    assert near_duplicate_share([clip], draws=40) == 0.0


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """TINY generated and extracted (sequentially) with the default settings."""
    root = tmp_path_factory.mktemp("sample") / "set"
    clips = generate_sample(TINY, root, workers=2)
    url = str(root.parent / "sample.zarr")
    summary = run_extraction(load_dataset("sample", root), url, ExtractSettings(), SequentialExecutor())
    assert summary.ok and summary.completed == len(clips)
    return root, clips, url


def test_layout_labels_and_splits(tiny_set):
    root, clips, url = tiny_set
    with (root / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["path"] for r in rows] == [c.path for c in clips] and all((root / c.path).is_file() for c in clips)
    assert {(r["motion"], r["scene"], r["split"]) for r in rows} == {(c.motion, c.scene, c.split) for c in clips}
    with np.load(root / VELOCITIES_FILE) as recorded:
        assert sorted(recorded.files) == sorted(c.name for c in clips)
        np.testing.assert_array_equal(recorded[clips[0].name], clip_velocities(clips[0]))
    index = load_dataset("sample", root)
    assert index.name == "sample" and index.classes == MOTIONS and not index.missing
    assert dict(index.label_sets) == {"motion": MOTIONS, "scene": ("cat", "coffee")}
    by_source = {v.source: v for v in index.videos}
    for clip in clips:
        video = by_source[clip.path]
        assert video.splits == {"1": clip.split} and video.class_name == clip.motion
        assert video.labels == {"motion": MOTIONS.index(clip.motion), "scene": ("cat", "coffee").index(clip.scene)}
    # The plain folder adapter reads the same set: motion classes, split from train/ and test/.
    folder = {v.source: v for v in load_dataset("folder", root).videos}
    assert {s: (v.label, dict(v.splits)) for s, v in folder.items()} == {
        s: (v.label, dict(v.splits)) for s, v in by_source.items()
    }
    # The store records both label sets.
    assert validate_store(url).ok
    store = open_store(url)
    assert store.dataset["label_sets"] == {"motion": list(MOTIONS), "scene": ["cat", "coffee"]}
    attrs = store.video_attrs()[by_source[clips[0].path].video_id]
    assert attrs["labels"] == dict(by_source[clips[0].path].labels)
    assert attrs["label_names"] == {"motion": clips[0].motion, "scene": clips[0].scene}
    # ... and the reader API exposes them.
    assert store.label_sets == {"motion": list(MOTIONS), "scene": ["cat", "coffee"]}
    video = store.video(by_source[clips[0].path].video_id)
    assert video.labels == dict(by_source[clips[0].path].labels)
    assert store.label_sets["scene"][video.labels["scene"]] == clips[0].scene


def _cell_centres(clip, grid_shape, cell=16, size=(340, 256)):
    """(gh, gw) x and y of each MV grid cell's centre in the clip's pixels."""
    gh, gw = grid_shape
    ys, xs = np.mgrid[0:gh, 0:gw]
    return (xs + 0.5) * cell * clip.width / size[0], (ys + 0.5) * cell * clip.height / size[1]


def _motion_agreement(clip, mvs, types):
    """How well the extracted vectors on the objects match the rendered motion: the mean
    cosine between the mean MV over each object's cells and its true displacement
    (translating patterns), or the share of object/frames whose vectors point outwards
    while it grows and inwards while it shrinks (pulse)."""
    cx, cy = _cell_centres(clip, mvs.shape[2:])
    to_mv = np.array([340 / clip.width, 256 / clip.height])
    agreement = []
    for t in range(1, clip.frames):
        if types[t] != "P":
            continue
        for obj in clip.objects:
            (x0, y0, s0), (x1, y1, s1) = object_centre(clip, obj, t - 1), object_centre(clip, obj, t)
            inside = (cx - x1) ** 2 + (cy - y1) ** 2 < (0.8 * obj.radius * s1) ** 2
            vectors = mvs[t][:, inside]  # (2, n) quarter pixels
            if not inside.any() or not vectors.any():
                continue
            if clip.motion == "pulse":
                growth = obj.radius * abs(s1 - s0)
                if growth > 0.3:
                    offsets = np.stack([cx[inside] - x1, cy[inside] - y1])
                    outwards = float((vectors * offsets).sum(0).mean()) > 0
                    agreement.append(outwards == (s1 > s0))
                continue
            velocity = np.array([x1 - x0, y1 - y0]) * to_mv
            if np.hypot(*velocity) > 1.0:
                mean = vectors.mean(axis=1)
                agreement.append(float(mean @ velocity / (np.linalg.norm(mean) * np.linalg.norm(velocity) + 1e-9)))
    return np.mean(agreement) if agreement else None


def test_every_motion_pattern_moves_the_vectors_its_way(tiny_set):
    _, clips, url = tiny_set
    store = open_store(url)
    ids = {attrs["source"]: video_id for video_id, attrs in store.video_attrs().items()}
    for clip in clips:
        video = store.video(ids[clip.path])
        mvs, types = np.asarray(video.mvs[:]).astype(np.float64), video.frame_types
        agreement = _motion_agreement(clip, mvs, types)
        assert agreement is not None and agreement > (0.6 if clip.motion == "pulse" else 0.7), (clip.name, agreement)
        # A static camera: the background far from every object carries (almost) no vectors.
        cx, cy = _cell_centres(clip, mvs.shape[2:])
        far = np.ones(cx.shape, bool)
        for obj in clip.objects:
            for t in range(clip.frames):
                x, y, s = object_centre(clip, obj, t)
                far &= (cx - x) ** 2 + (cy - y) ** 2 > (1.6 * obj.radius * s + 8) ** 2
        p_frames = [t for t in range(1, clip.frames) if types[t] == "P"]
        if far.sum() >= 10:
            assert np.any(mvs[p_frames][:, :, far] != 0, axis=1).mean() < 0.02, clip.name


def test_objects_carry_vectors_and_a_panning_camera_adds_more(tiny_set, tmp_path):
    _, clips, url = tiny_set
    coverage = mv_block_coverage(url)
    assert coverage.videos == len(clips) and coverage.p_frames == len(clips) * (36 - 3)
    assert 0.03 < coverage.share < 0.3, coverage  # measured: ~0.09 (objects only)
    panning = dataclasses.replace(TINY, videos_per_class=1, scenes=("coffee",), motions=("pulse",), camera=True)
    generate_sample(panning, tmp_path / "pan", workers=0)
    run_extraction(
        load_dataset("sample", tmp_path / "pan"), str(tmp_path / "p.zarr"), ExtractSettings(), SequentialExecutor()
    )
    assert mv_block_coverage(str(tmp_path / "p.zarr")).share > 0.5


def test_output_folder_rules(tmp_path):
    spec = dataclasses.replace(TINY, videos_per_class=1, frames=4, scenes=("cat",), motions=("oscillate_y",))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_sample(spec, tmp_path / "busy", workers=0)
    generate_sample(spec, tmp_path / "set", workers=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_sample(spec, tmp_path / "set", workers=0)
    (tmp_path / "set" / "notes.txt").write_text("kept")
    clips = generate_sample(dataclasses.replace(spec, motions=("pulse",)), tmp_path / "set", workers=0, overwrite=True)
    assert sorted(p.relative_to(tmp_path / "set").as_posix() for p in (tmp_path / "set").rglob("*.mp4")) == [
        c.path for c in clips
    ]
    assert (tmp_path / "set" / "notes.txt").read_text() == "kept"


def test_an_ffmpeg_failure_says_what_ffmpeg_said(tmp_path):
    """A clip ffmpeg cannot write raises with ffmpeg's own error, not a bare exit status."""
    from comode.sampleset.render import encode_frames

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(RuntimeError, match="exited with .*Unknown encoder 'no_such_encoder'"):
        encode_frames(frames, 25, ["-c:v", "no_such_encoder", str(tmp_path / "x.mp4")], timeout=60)
    assert not (tmp_path / "x.mp4").exists()


def test_cli_generates_and_measures(tmp_path):
    result = subprocess.run(
        comode_command(
            "sample",
            "--out",
            tmp_path / "s",
            "--videos-per-class",
            2,
            "--frames",
            13,
            "--motions",
            "circle_cw,pulse",
            "--scenes",
            "rocket",
            "--workers",
            0,
            "--measure",
            "--no-progress",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "4 (2 train, 2 test), 13 frames at 170x128" in result.stdout
    assert "motion-vector coverage" in result.stdout and "pulse" in result.stdout
    bad = subprocess.run(
        comode_command("sample", "--out", tmp_path / "b", "--scenes", "moon"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown motion/scene" in bad.stderr
