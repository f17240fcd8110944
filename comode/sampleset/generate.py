"""Writing a whole sample set to a folder (the ``sample`` dataset format), in parallel
processes.  See :mod:`comode.sampleset`."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from comode.extract.datasets import SAMPLE_LABELS_FILE, write_sample_labels
from comode.extract.executors import default_worker_count
from comode.sampleset.motion import clip_velocities
from comode.sampleset.render import render_clip, video_encoder, write_clip
from comode.sampleset.spec import ClipPlan, SampleSpec, plan_clips

SETTINGS_FILE = "sample.json"
VELOCITIES_FILE = "velocities.npz"


def generate_clip(clip: ClipPlan, out: Path) -> ClipPlan:
    """Render and write one clip under ``out`` (the unit of work of the process pool)."""
    write_clip(out / clip.path, render_clip(clip), fps=clip.fps)
    return clip


def _clip_record(clip: ClipPlan) -> dict:
    record = asdict(clip)
    record["path"] = clip.path
    record["background_velocity"] = clip.background_velocity
    return record


def generate_sample(
    spec: SampleSpec,
    out: str | Path,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    on_clip: Callable[[ClipPlan, int, int], None] | None = None,
) -> list[ClipPlan]:
    """Write the sample dataset described by ``spec`` to ``out``; returns its clips.

    ``out`` must be empty or absent, or hold an earlier sample set (then ``overwrite``
    replaces its train/, test/, labels.csv and sample.json; nothing else is touched).
    ``workers``: rendering processes (default: one per core; 0 or 1 = in this process).
    ``on_clip(clip, done, total)`` is called as clips finish.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / SETTINGS_FILE).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {SETTINGS_FILE}: choose an empty or new folder")
        if not overwrite:
            raise FileExistsError(f"{out} already holds a sample set; pass overwrite=True (--overwrite) to replace it")
        for name in ("train", "test"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (SAMPLE_LABELS_FILE, SETTINGS_FILE, VELOCITIES_FILE):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    clips = plan_clips(spec)
    workers = workers if workers is not None else default_worker_count()
    for done, clip in enumerate(_run(clips, out, workers), 1):
        if on_clip:
            on_clip(clip, done, len(clips))
    np.savez_compressed(out / VELOCITIES_FILE, **{c.name: clip_velocities(c) for c in clips})
    write_sample_labels(out, ("motion", "scene"), ([c.path, c.split, c.motion, c.scene] for c in clips))
    settings = {
        "generator": "comode sample",
        "spec": asdict(spec),
        "encoder": list(video_encoder()),
        "assets": "comode/sampleset/assets/README.md (scikit-image sample data, CC0 / public domain)",
        "clips": [_clip_record(c) for c in clips],
    }
    # Written last: its presence marks a finished set.
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    return clips


def _run(clips: Sequence[ClipPlan], out: Path, workers: int) -> Iterator[ClipPlan]:
    if workers <= 1 or len(clips) <= 1:
        for clip in clips:
            yield generate_clip(clip, out)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(generate_clip, clips, [out] * len(clips), chunksize=1)
