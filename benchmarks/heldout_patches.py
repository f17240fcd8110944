"""Does the demo configuration generalise?  A labelled motion and scene set it has never been tuned on.

Not a test and not the built-in sample set: real 64x64 patches cut from frames of the shared
real clips (``../shared/data/real``) move with a class-defined velocity (6 directions, speed
jittered per clip, wrapping around the frame) over a static real background.  Nothing of it
is in comode's sample generator: no photo of ``sample_assets/``, no time-varying motion --
constant velocities, the case that makes the hard negatives of the motion loss differ only
in where the patches are.

Two label sets, independent by construction (every direction x every background, the same
number of clips in each cell and each split): ``motion`` (the direction) and ``scene`` (which
of ``--backgrounds`` shared clips, drawn by the data seed, the background frame comes from).
A test clip's background is a frame of its scene clip from another moment than any train
clip's, so scene retrieval must recognise the place, not find the same picture.  The patches
come from the other shared clips only.  Both sets are in ``labels.csv`` beside the class
folders (``train|test/<direction>/<scene>_<direction>_<k>.mp4``): the ``sample`` dataset format,
the folder layout plus that file, as ``comode sample`` writes it.

It then runs exactly what a user runs on a new labelled folder, and evaluates three kinds of
V-Network with the default feature (``--feature both``): the pretrained one (one run per
pretraining seed), random init of the same backbone and clip, and random init of the paper's
RGB network (``r3d_26`` for ``r3d_26_slowrgbdiff``) at the same clip and width (the scene
floor; 3 seeds each)::

    make extract DATASET=folder ROOT=OUT/videos STORE=OUT/videos.zarr    # motion labels from the folders
    make extract DATASET=sample ROOT=OUT/videos STORE=OUT/videos.zarr    # same videos, nothing re-extracted:
                                                                         # adds the label sets of labels.csv
    train pretrain --store OUT/videos.zarr --config configs/pretrain/demo_cpu.yaml --out OUT/run-seedN seed=N
    evaluate retrieval --store OUT/videos.zarr --checkpoint OUT/run-seedN/last.pt --label-set motion|scene
    evaluate retrieval ... --label-set motion --other-than scene            # motion across scenes
    evaluate retrieval --store OUT/videos.zarr --checkpoint random --config OUT/run-seed0/config.yaml --seed N
    evaluate retrieval ... --checkpoint random --config OUT/run-seed0/config.yaml --backbone r3d_26 --seed N
    evaluate linear    (the same, linear probe)

It prints motion and scene R@1 and linear top-1 of each (mean ± std and per seed), the
pretext accuracies beside their blind levels, and the two targets of issue 23 with their
verdicts: motion R@1 at least 10 points and 3 standard deviations (of either side) above
random init of the same backbone; scene R@1 no more than 5 points below random init of the
RGB network.  ``OUT/heldout.json`` holds the same numbers.  The real 3-seed run::

    .venv/bin/python benchmarks/heldout_patches.py --out runs/heldout-scene --pretrain-seeds 0,1,2

Roughly 8 minutes on 2 idle cores per pretraining seed, plus ~10 for the data, the
extraction and the 6 random-init floors (~35 minutes in all).  A finished pretraining run
and cached features are reused.  A smoke test of the pipeline, not a measurement (it says
so, and ``heldout.json`` records ``"measurement": false``; ~5 CPU minutes)::

    .venv/bin/python benchmarks/heldout_patches.py --out /tmp/heldout-smoke --clips-per-class 4 --backgrounds 2 --pretrain-seeds 0,1 optim.steps=20

Results: docs/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from comode.evaluate.ablation import pretext_metrics, rgb_backbone
from comode.extract.datasets import write_sample_labels
from comode.extract.encode import ffmpeg_exe
from comode.sampleset import write_clip
from comode.train.config import load_config

SHARED = Path(os.environ.get("COMODE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# Six directions 60 degrees apart (0 = right, 90 = down in image coordinates).
DIRECTIONS = {f"dir{angle:03d}": angle for angle in range(0, 360, 60)}
WIDTH, HEIGHT, PATCH, FRAMES, FPS = 256, 192, 64, 96, 25
PATCH_FRAMES = 4  # frames per patch clip, spread over its first 4 s
# Frames per scene clip over its first 4 s: the even ones are train backgrounds, the odd ones
# test backgrounds (another moment of the same place).
SCENE_FRAMES = 8
LABEL_SETS = ("motion", "scene")
# The targets of issue 23 on this data (points of R@1).
MOTION_MARGIN, MOTION_STDS, SCENE_SLACK = 0.10, 3.0, 0.05


def real_frames(video: Path, count: int) -> list[np.ndarray]:
    """``count`` frames of ``video``, spread over its first 4 s, as (HEIGHT, WIDTH, 3) uint8
    (scaled to cover, centre-cropped)."""
    command = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-i",
        str(video),
        "-vf",
        f"fps={count / 4},scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=increase,crop={WIDTH}:{HEIGHT}",
        "-frames:v",
        str(count),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    raw = subprocess.run(command, capture_output=True, check=True, timeout=120).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3))


def render(
    background: np.ndarray, patches: list[np.ndarray], starts: list[tuple[float, float]], velocity: tuple[float, float]
) -> np.ndarray:
    """(FRAMES, HEIGHT, WIDTH, 3): the patches move by ``velocity`` px/frame over the static
    background, wrapping around (integer positions of the sub-pixel path)."""
    out = np.repeat(background[None], FRAMES, axis=0)
    for t in range(FRAMES):
        for patch, (x0, y0) in zip(patches, starts):
            x = int(round(x0 + velocity[0] * t)) % WIDTH
            y = int(round(y0 + velocity[1] * t)) % HEIGHT
            rows = (np.arange(PATCH) + y) % HEIGHT
            cols = (np.arange(PATCH) + x) % WIDTH
            out[t][np.ix_(rows, cols)] = patch
    return out


def make_set(out: Path, *, clips_per_class: int, backgrounds: int, test_share: float, seed: int) -> int:
    """Write the clips, ``labels.csv`` (motion, scene) and ``clips.json``; the number of clips."""
    videos = sorted(p for p in (SHARED / "real").iterdir() if p.suffix in (".mp4", ".mkv", ".avi"))
    if not videos:
        sys.exit(f"no shared real clips under {SHARED / 'real'} (set COMODE_SHARED_DATA)")
    if not 2 <= backgrounds < len(videos):
        sys.exit(f"--backgrounds must be 2..{len(videos) - 1} (the other shared clips give the patches)")
    if clips_per_class % backgrounds:
        sys.exit(f"--clips-per-class {clips_per_class} is not a multiple of --backgrounds {backgrounds}")
    per_cell = clips_per_class // backgrounds
    tests = round(per_cell * test_share)
    if not 0 < tests < per_cell:
        sys.exit(f"{per_cell} clips per direction x background leave no train or no test clip at --test-share")
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(videos), backgrounds, replace=False).tolist())
    scenes = {videos[i].stem: real_frames(videos[i], SCENE_FRAMES) for i in sorted(chosen)}
    short = [name for name, frames in scenes.items() if len(frames) < SCENE_FRAMES]
    if short:
        sys.exit(f"scene clip {short[0]} gave fewer than {SCENE_FRAMES} frames in its first 4 s")
    # Patches never come from a scene clip: a patch must say nothing of the scene label.
    pool = [(v.stem, frame) for i, v in enumerate(videos) if i not in chosen for frame in real_frames(v, PATCH_FRAMES)]
    count, records, rows = 0, {}, []
    for name, angle in DIRECTIONS.items():
        for scene, frames in scenes.items():
            for k in range(per_cell):
                speed = rng.uniform(1.6, 2.6)
                velocity = (speed * math.cos(math.radians(angle)), speed * math.sin(math.radians(angle)))
                split = "test" if k < tests else "train"
                frame_index = int(rng.integers(len(frames) // 2)) * 2 + (split == "test")
                patches, sources = [], []
                for _ in range(int(rng.integers(1, 3))):
                    source = int(rng.integers(len(pool)))
                    sources.append(pool[source][0])
                    y, x = int(rng.integers(0, HEIGHT - PATCH)), int(rng.integers(0, WIDTH - PATCH))
                    patches.append(pool[source][1][y : y + PATCH, x : x + PATCH])
                starts = [(float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT))) for _ in patches]
                path = f"{split}/{name}/{scene}_{name}_{k:03d}.mp4"
                write_clip(out / path, render(frames[frame_index], patches, starts, velocity), fps=FPS)
                records[path] = {"scene_frame": frame_index, "patch_sources": sources, "speed": speed}
                rows.append((path, split, name, scene))
                count += 1
    write_sample_labels(out, LABEL_SETS, rows)
    (out / "clips.json").write_text(json.dumps(records, indent=1) + "\n")
    return count


def run(command: list[str]) -> str:
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def metric(report_dir: Path, kind: str, key: str) -> float:
    """One metric of an evaluation report (``<kind>.json``)."""
    return float(json.loads((report_dir / f"{kind}.json").read_text())["metrics"][key])


# What each V-Network is measured on: (name, evaluate command, label set, extra options, metric).
MEASURES = (
    ("motion R@1", "retrieval", "motion", [], "R@1"),
    ("motion R@1, other scene", "retrieval", "motion", ["--other-than", "scene"], "R@1"),
    ("motion linear top-1", "linear", "motion", [], "top1"),
    ("scene R@1", "retrieval", "scene", [], "R@1"),
    ("scene linear top-1", "linear", "scene", [], "top1"),
)


def evaluate(bin_dir: Path, store: Path, out: Path, checkpoint_args: list[str]) -> dict[str, float]:
    """Every measure of :data:`MEASURES` of one V-Network on the held-out set; the network
    runs once (one feature cache, ``out/features``), every report has its folder in ``out``."""
    results = {}
    for name, kind, label_set, extra, key in MEASURES:
        report = out / name.replace(", ", "-").replace(" ", "-")
        options = ["--picture", "0"] if kind == "retrieval" else []
        run(
            [
                str(bin_dir / "evaluate"),
                kind,
                "--store",
                str(store),
                *checkpoint_args,
                "--label-set",
                label_set,
                *extra,
                "--out",
                str(report),
                "--cache-dir",
                str(out / "features"),
                *options,
                "--no-progress",
            ]
        )
        results[name] = metric(report, kind, key)
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spread(values: list[float]) -> str:
    """'mean ± std (v1, v2, ...)' in percent."""
    mean, std = mean_std(values)
    return f"{100 * mean:.1f} ± {100 * std:.1f} ({', '.join(f'{100 * v:.1f}' for v in values)})"


def targets(models: dict[str, dict]) -> list[dict]:
    """The two targets of issue 23, each with its numbers and verdict."""

    def values(model: str, name: str) -> list[float]:
        return [seed[name] for seed in models[model]["per_seed"].values()]

    (pre, pre_std), (floor, floor_std) = (mean_std(values(m, "motion R@1")) for m in ("pretrained", "random"))
    margin = pre - floor
    needed = max(MOTION_MARGIN, MOTION_STDS * max(pre_std, floor_std))
    scene, rgb = mean_std(values("pretrained", "scene R@1"))[0], mean_std(values("random_rgb", "scene R@1"))[0]
    return [
        {
            "target": "motion R@1 >= random init of the same backbone + 10 points and + 3 std (of either side)",
            "difference": margin,
            "needed": needed,
            "pass": margin >= needed,
        },
        {
            "target": "scene R@1 >= random init of the RGB network - 5 points",
            "difference": scene - rgb,
            "needed": -SCENE_SLACK,
            "pass": scene - rgb >= -SCENE_SLACK,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="configs/pretrain/demo_cpu.yaml")
    parser.add_argument("--seed", type=int, default=0, help="data seed of the generated clips")
    parser.add_argument("--pretrain-seeds", default="0", help="pretraining seeds (the config's `seed`), one run each")
    parser.add_argument(
        "--clips-per-class", type=int, default=40, help="clips per direction (a multiple of --backgrounds)"
    )
    parser.add_argument("--backgrounds", type=int, default=4, help="scene classes: shared clips giving backgrounds")
    parser.add_argument("--test-share", type=float, default=1 / 3)
    parser.add_argument("--floor-seeds", default="0,1,2", help="seeds of both random-init floors")
    parser.add_argument("overrides", nargs="*", help="config overrides for train pretrain (e.g. optim.steps=20)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    videos, store = args.out / "videos", args.out / "videos.zarr"
    pretrain_seeds = [int(s) for s in args.pretrain_seeds.split(",")]
    floor_seeds = [int(s) for s in args.floor_seeds.split(",")]
    started = time.perf_counter()
    if not (videos / "done").exists():
        count = make_set(
            videos,
            clips_per_class=args.clips_per_class,
            backgrounds=args.backgrounds,
            test_share=args.test_share,
            seed=args.seed,
        )
        (videos / "done").write_text(f"{count}\n")
    # The user's command first (the class folders give the motion labels), then the sample
    # format on the same root and store: the same video ids, so nothing is re-extracted and
    # the groups are relabelled with both label sets of labels.csv.
    for dataset in ("folder", "sample"):
        run(
            [
                str(bin_dir / "comode"),
                "extract",
                "--dataset",
                dataset,
                "--root",
                str(videos),
                "--out",
                str(store),
                "--no-progress",
            ]
        )
    models: dict[str, dict] = {}
    pretrained, pretext = {}, {}
    for seed in pretrain_seeds:
        run_dir = args.out / f"run-seed{seed}"
        # Resumable: a run with a last.pt goes on from it (--resume: an interrupted run
        # finishes its steps, a finished one returns at once), never evaluated half-trained.
        resume = ["--resume"] if (run_dir / "last.pt").exists() else []
        run(
            [
                str(bin_dir / "train"),
                "pretrain",
                "--store",
                str(store),
                "--config",
                args.config,
                "--out",
                str(run_dir),
                *resume,
                "--no-progress",
                *args.overrides,
                f"seed={seed}",
            ]
        )
        pretrained[seed] = evaluate(
            bin_dir, store, args.out / f"eval-seed{seed}", ["--checkpoint", str(run_dir / "last.pt")]
        )
        pretext[seed] = pretext_metrics(run_dir / "metrics.jsonl")
    # The floors are built from the run's own config (its overrides included): the backbone,
    # width and clip the pretrained network was trained and is evaluated at.
    run_config = args.out / f"run-seed{pretrain_seeds[0]}" / "config.yaml"
    backbone = load_config(run_config).model.backbone
    models["pretrained"] = {"backbone": backbone, "per_seed": pretrained}
    for key, floor_backbone in (("random", backbone), ("random_rgb", rgb_backbone(backbone))):
        models[key] = {
            "backbone": floor_backbone,
            "per_seed": {
                seed: evaluate(
                    bin_dir,
                    store,
                    args.out / f"eval-{key.replace('_', '-')}-seed{seed}",
                    [
                        "--checkpoint",
                        "random",
                        "--config",
                        str(run_config),
                        *(["--backbone", floor_backbone] if floor_backbone != backbone else []),
                        "--seed",
                        str(seed),
                    ],
                )
                for seed in floor_seeds
            },
        }
    for model in models.values():
        model["mean_std"] = {
            name: mean_std([seed[name] for seed in model["per_seed"].values()]) for name, *_ in MEASURES
        }
    verdicts = targets(models)
    # Smaller data or changed training settings make a smoke test of the pipeline, not a result.
    measurement = not args.overrides and all(
        getattr(args, key) == parser.get_default(key)
        for key in ("config", "clips_per_class", "backgrounds", "test_share")
    )
    seconds = time.perf_counter() - started
    tail = {key: statistics.fmean(p[key] for p in pretext.values()) for key in next(iter(pretext.values()))}
    summary = {
        "data": {
            "seed": args.seed,
            "clips_per_class": args.clips_per_class,
            "backgrounds": args.backgrounds,
            "test_share": args.test_share,
        },
        "measurement": measurement,
        "config": args.config,
        "overrides": args.overrides,
        "models": models,
        "pretext_last_quarter": {"per_seed": pretext, "mean": tail},
        "targets": verdicts,
        "seconds": seconds,
    }
    (args.out / "heldout.json").write_text(json.dumps(summary, indent=1) + "\n")

    labels = {
        "pretrained": f"pretrained, seeds {args.pretrain_seeds}",
        "random": f"random init {backbone}, seeds {args.floor_seeds}",
        "random_rgb": f"random init {rgb_backbone(backbone)} (RGB), seeds {args.floor_seeds}",
    }
    print(f"\nheld-out constant-velocity patches x {args.backgrounds} scenes ({args.out}), {seconds:.0f} s")
    print(
        f"pretext, last quarter, pretraining seeds {args.pretrain_seeds}: acc_motion {100 * tail['acc_motion']:.1f} % "
        f"(blind {100 * tail['blind_acc_motion']:.1f} %), loss_motion {tail['loss_motion']:.3f} "
        f"(blind {tail['blind_loss_motion']:.3f}); acc_context {100 * tail['acc_context']:.1f} % "
        f"(blind {100 * tail['blind_acc_context']:.1f} %)"
    )
    for name, *_ in MEASURES:
        print(f"{name}:")
        for key, model in models.items():
            print(f"  {labels[key]}: {spread([seed[name] for seed in model['per_seed'].values()])}")
    for verdict in verdicts:
        print(
            f"{'PASS' if verdict['pass'] else 'FAIL'}: {verdict['target']}: "
            f"{100 * verdict['difference']:+.1f} points (needed {100 * verdict['needed']:+.1f})"
        )
    if not measurement:
        print("smoke test (data size, config or overrides changed): not a measurement of the targets")
    print(f"summary {args.out / 'heldout.json'}")


if __name__ == "__main__":
    main()
