"""Does the demo configuration generalise?  A labelled motion set it has never been tuned on.

Not a test and not the built-in sample set: real 64x64 patches cut from frames of the shared
real clips (``../shared/data/real``) move with a class-defined velocity (6 directions, speed
jittered per clip, wrapping around the frame) over a static real background (a frame of
another shared clip).  Nothing of it is in comode's sample generator: no photo of
``sample_assets/``, no time-varying motion -- constant velocities, the case that makes the
hard negatives of the motion loss differ only in where the patches are.

It then runs exactly what a user runs on a new labelled folder, and prints motion
retrieval R@1 and linear-probe top-1 of the pretrained V-Network (one run per pretraining
seed) beside random init (same backbone and clip, 3 seeds)::

    make extract DATASET=folder ROOT=OUT/videos STORE=OUT/videos.zarr
    train pretrain --store OUT/videos.zarr --config configs/pretrain/demo_cpu.yaml --out OUT/run
    evaluate retrieval --store OUT/videos.zarr --checkpoint OUT/run/last.pt
    evaluate retrieval --store OUT/videos.zarr --checkpoint random --config configs/pretrain/demo_cpu.yaml --seed N

    evaluate linear    (the same two, linear probe)

    .venv/bin/python benchmarks/heldout_patches.py --out runs/heldout [--pretrain-seeds 0,1,2] [--seed 0]

Roughly 8 minutes on 2 cores per pretraining seed, plus ~4 for the data and the floor.
A finished pretraining run is reused.  Results: docs/results/.
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

from comode.extract.encode import ffmpeg_exe
from comode.sampleset import write_clip

SHARED = Path(os.environ.get("COMODE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# Six directions 60 degrees apart (0 = right, 90 = down in image coordinates).
DIRECTIONS = {f"dir{angle:03d}": angle for angle in range(0, 360, 60)}
WIDTH, HEIGHT, PATCH, FRAMES, FPS = 256, 192, 64, 96, 25


def real_frames(videos: list[Path], per_video: int) -> list[np.ndarray]:
    """``per_video`` frames of each video, spread over its first 4 s, as (HEIGHT, WIDTH, 3) uint8
    (scaled to cover, centre-cropped)."""
    frames = []
    for video in videos:
        command = [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(video),
            "-vf",
            f"fps={per_video / 4},scale={WIDTH}:{HEIGHT}:force_original_aspect_ratio=increase,crop={WIDTH}:{HEIGHT}",
            "-frames:v",
            str(per_video),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ]
        raw = subprocess.run(command, capture_output=True, check=True, timeout=120).stdout
        frames += list(np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3))
    return frames


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


def make_set(out: Path, *, clips_per_class: int, test_share: float, seed: int) -> int:
    videos = sorted(p for p in (SHARED / "real").iterdir() if p.suffix in (".mp4", ".mkv", ".avi"))
    if not videos:
        sys.exit(f"no shared real clips under {SHARED / 'real'} (set COMODE_SHARED_DATA)")
    pool = real_frames(videos, per_video=4)
    rng = np.random.default_rng(seed)
    count, records = 0, {}
    for name, angle in DIRECTIONS.items():
        for k in range(clips_per_class):
            speed = rng.uniform(1.6, 2.6)
            velocity = (speed * math.cos(math.radians(angle)), speed * math.sin(math.radians(angle)))
            background_index = int(rng.integers(len(pool)))
            patches, sources = [], []
            for _ in range(int(rng.integers(1, 3))):
                sources.append(int(rng.integers(len(pool))))
                y, x = int(rng.integers(0, HEIGHT - PATCH)), int(rng.integers(0, WIDTH - PATCH))
                patches.append(pool[sources[-1]][y : y + PATCH, x : x + PATCH])
            starts = [(float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT))) for _ in patches]
            split = "test" if k < round(clips_per_class * test_share) else "train"
            path = f"{split}/{name}/{name}_{k:03d}.mp4"
            write_clip(out / path, render(pool[background_index], patches, starts, velocity), fps=FPS)
            records[path] = {"background": background_index, "patch_sources": sources, "speed": speed}
            count += 1
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


def evaluate(bin_dir: Path, store: Path, out: Path, checkpoint_args: list[str]) -> tuple[float, float]:
    """(retrieval R@1, linear-probe top-1) of one V-Network on the held-out set."""
    results = []
    for kind, key in (("retrieval", "R@1"), ("linear", "top1")):
        report = out.with_name(f"{out.name}-{kind}")
        extra = ["--picture", "0"] if kind == "retrieval" else []
        run(
            [
                str(bin_dir / "evaluate"),
                kind,
                "--store",
                str(store),
                *checkpoint_args,
                "--out",
                str(report),
                "--cache-dir",
                str(out.with_name(f"{out.name}-features")),
                *extra,
                "--no-progress",
            ]
        )  # one feature pass
        results.append(metric(report, kind, key))
    return results[0], results[1]


def spread(values: list[float]) -> str:
    """'mean ± std (v1, v2, ...)' in percent."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * std:.1f} ({', '.join(f'{100 * v:.1f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="configs/pretrain/demo_cpu.yaml")
    parser.add_argument("--seed", type=int, default=0, help="data seed of the generated clips")
    parser.add_argument("--pretrain-seeds", default="0", help="pretraining seeds (the config's `seed`), one run each")
    parser.add_argument("--clips-per-class", type=int, default=40)
    parser.add_argument("--test-share", type=float, default=1 / 3)
    parser.add_argument("--floor-seeds", default="0,1,2", help="seeds of the random-init floor")
    parser.add_argument("overrides", nargs="*", help="config overrides for train pretrain")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    videos, store = args.out / "videos", args.out / "videos.zarr"
    started = time.perf_counter()
    if not (videos / "done").exists():
        count = make_set(videos, clips_per_class=args.clips_per_class, test_share=args.test_share, seed=args.seed)
        (videos / "done").write_text(f"{count}\n")
    run(
        [
            str(bin_dir / "comode"),
            "extract",
            "--dataset",
            "folder",
            "--root",
            str(videos),
            "--out",
            str(store),
            "--no-progress",
        ]
    )
    pretrained, pretext = [], []
    for seed in (int(s) for s in args.pretrain_seeds.split(",")):
        run_dir = args.out / f"run-seed{seed}"
        if not (run_dir / "last.pt").exists():  # resumable: a finished run is not retrained
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
                    "--no-progress",
                    *args.overrides,
                    f"seed={seed}",
                ]
            )
        pretrained.append(
            evaluate(bin_dir, store, args.out / f"eval-seed{seed}", ["--checkpoint", str(run_dir / "last.pt")])
        )
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        pretext.append(metrics[-max(1, len(metrics) // 4) :])
    floors = [
        evaluate(
            bin_dir,
            store,
            args.out / f"eval-random-seed{seed}",
            ["--checkpoint", "random", "--config", args.config, "--seed", str(seed)],
        )
        for seed in (int(s) for s in args.floor_seeds.split(","))
    ]
    tail = [record for records in pretext for record in records]
    mean = lambda key: statistics.fmean(r[key] for r in tail if r.get(key) is not None)  # noqa: E731
    print(f"\nheld-out constant-velocity patches ({args.out}), {time.perf_counter() - started:.0f} s")
    print(
        f"pretext, last quarter, pretraining seeds {args.pretrain_seeds}: acc_motion {100 * mean('acc_motion'):.1f} % "
        f"(blind {100 * mean('blind_acc_motion'):.1f} %), loss_motion {mean('loss_motion'):.3f} "
        f"(blind {mean('blind_loss_motion'):.3f}); acc_context {100 * mean('acc_context'):.1f} % "
        f"(blind {100 * mean('blind_acc_context'):.1f} %)"
    )
    for name, column in (("motion R@1", 0), ("motion linear top-1", 1)):
        print(
            f"{name}: pretrained {spread([p[column] for p in pretrained])} (seeds {args.pretrain_seeds}); "
            f"random init {spread([f[column] for f in floors])} (seeds {args.floor_seeds})"
        )


if __name__ == "__main__":
    main()
