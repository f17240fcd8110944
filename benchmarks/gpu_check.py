"""The GPU check (`make gpu-check`): does pretraining at the paper's configuration run on this
CUDA machine, how fast, and how many DataLoader workers does it take to keep the GPU busy?

    python benchmarks/gpu_check.py [--steps 30] [--workers 4,8,16] [--work DIR] [--cpu]

One script, < 5 min on one CUDA GPU:

1. builds a small store from the shared clips (``$COMODE_SHARED_DATA/real``, like the
   tests): the clips extracted once, then linked into ``--videos`` video groups (enough for
   several batches; the arrays are the real ones, so decoding costs what it costs);
2. pretrains the paper's configuration (``configs/pretrain/r3d26_ucf101.yaml``: R3D-26,
   full width, batch 64, bf16 autocast) for ``--steps`` steps from batches already in
   memory: the GPU-bound rate and the peak GPU memory;
3. the same with the real DataLoader at each ``--workers`` count: clips/s, and the share
   of step time spent waiting for data = 1 - (rate with the loader) / (rate from memory);
4. prints the fewest workers that keep the GPU busy (>= 95 % of the rate from memory).

Exit status: 0 when the CUDA path works (or there is no CUDA device: then it says so, and
runs the same code on the CPU with the tiny configuration for 2 steps, which is what CI
checks); 1 when a CUDA device is there and the CUDA path fails (a CPU build of torch, a
driver torch cannot use, an error in a step).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_scale import COMODE, REPO, build_store, shared_clips, template_store

# The fewest workers whose rate is at least this share of the rate from memory "keep the GPU busy".
BUSY = 0.95
CPU_CLIP = "mmaction2_apply_eye_makeup.avi"  # the smallest shared clip: CPU mode stays fast


@dataclasses.dataclass(frozen=True)
class Mode:
    """What one run measures: the paper's configuration on CUDA, a tiny one on the CPU."""

    device: str
    config: Path
    overrides: tuple[str, ...]
    clips: tuple[str, ...] | None  # None: every shared clip
    videos: int
    steps: int
    workers: tuple[int, ...]


def cuda_mode(steps: int, workers: tuple[int, ...]) -> Mode:
    return Mode(
        "cuda",
        REPO / "configs/pretrain/r3d26_ucf101.yaml",
        ("data.batch_size=64",),
        None,
        videos=512,
        steps=steps,
        workers=workers,
    )


def cpu_mode() -> Mode:
    return Mode(
        "cpu",
        REPO / "configs/pretrain/tiny_cpu.yaml",
        ("data.batch_size=2",),
        (CPU_CLIP,),
        videos=4,
        steps=2,
        workers=(0,),
    )


def cuda_problem() -> str | None:
    """Why a CUDA device that is there cannot be used (None: usable, or no device at all)."""
    import torch

    if torch.cuda.is_available():
        return None
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.strip() if smi else ""
    if not listed:
        return None
    if torch.version.cuda is None:
        return (
            f"nvidia-smi lists {listed.splitlines()[0]!r}, but torch {torch.__version__} is a CPU build: "
            f"install a CUDA build into the venv (pip install torch=={torch.__version__.split('+')[0]} from "
            "the PyTorch CUDA index)"
        )
    return (
        f"nvidia-smi lists {listed.splitlines()[0]!r}, but torch {torch.__version__} (CUDA {torch.version.cuda}) "
        "cannot use it (driver too old for this CUDA build?)"
    )


def shared_store(work: Path, mode: Mode) -> tuple[str, int]:
    """A store of ``mode.videos`` videos hard-linked to the extracted shared clips; (url, clips)."""
    names = mode.clips or shared_clips()
    template = template_store(work, names, workers=None if mode.device == "cuda" else 0)
    store = work / "store.zarr"
    build_store(template, store, mode.videos)
    subprocess.run([*COMODE, "store", "reindex", str(store)], check=True, capture_output=True)
    return str(store), len(names)


def rate(mode: Mode, store: str, work: Path, *, workers: int, from_memory: bool) -> float:
    """Clips/s of ``mode.steps`` pretraining steps (with ``workers`` DataLoader workers, or
    from batches decoded once and kept in memory)."""
    from comode.data.training_data import open_store_data
    from comode.train.config import load_config
    from comode.train.loop import run_pretraining

    config = load_config(
        mode.config,
        [
            *mode.overrides,
            "data.split=null",
            "data.subset=null",
            f"max_steps={mode.steps}",
            f"save_every_steps={10 * mode.steps}",
            f"data.workers={0 if from_memory else workers}",
        ],
    )
    data = open_store_data(config.data, store, seed=config.seed)
    if from_memory:
        data = dataclasses.replace(data, dataset=InMemory(data.dataset, samples=2 * config.data.batch_size))
    out = work / f"run-{'memory' if from_memory else workers}"
    shutil.rmtree(out, ignore_errors=True)
    return run_pretraining(config, data=data, out_dir=out, show_progress=False).clips_per_s


class InMemory:
    """A dataset whose first ``samples`` items are decoded once and then served from memory
    (anything else the loop asks of a dataset, e.g. its count of skipped videos, is the wrapped one's)."""

    def __init__(self, dataset, *, samples: int) -> None:
        self.dataset, self.size = dataset, len(dataset)
        self.items = [dataset[index] for index in range(min(samples, self.size))]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        return self.items[int(index) % len(self.items)]

    def set_epoch(self, epoch: int) -> None:
        pass

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def measure(mode: Mode, work: Path) -> None:
    import torch

    start = time.perf_counter()
    store, clips = shared_store(work, mode)
    print(
        f"store: {mode.videos} videos linked to {clips} extracted shared clip(s), {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    cuda = mode.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reference = rate(mode, store, work, workers=0, from_memory=True)
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    print(f"batches from memory: {reference:.3g} clips/s{peak}", flush=True)
    enough = None
    for workers in mode.workers:
        measured = rate(mode, store, work, workers=workers, from_memory=False)
        waiting = max(0.0, 1.0 - measured / reference)
        print(
            f"{workers:>2} DataLoader workers: {measured:.3g} clips/s, waiting for data {100 * waiting:.0f} % "
            "of step time",
            flush=True,
        )
        if measured >= BUSY * reference:
            enough = workers
            break
    if enough is not None:
        print(f"workers that keep the {mode.device.upper()} busy: {enough}")
    else:
        print(
            f"workers that keep the {mode.device.upper()} busy: more than {max(mode.workers)} "
            f"(or fewer clips/s per worker than this machine's cores give)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps per measurement (CUDA)")
    parser.add_argument("--workers", default="4,8,12,16", help="DataLoader worker counts to try, in order (CUDA)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--cpu", action="store_true", help="the CPU mode even where CUDA works")
    args = parser.parse_args()
    import torch

    problem = cuda_problem()
    if problem is not None:
        sys.exit(f"gpu-check FAILED: {problem}")
    if torch.cuda.is_available() and not args.cpu:
        cores = os.cpu_count() or 1
        mode = cuda_mode(args.steps, tuple(w for w in map(int, args.workers.split(",")) if w <= cores) or (cores,))
        print(
            f"device: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda}); "
            f"{cores} CPU cores",
            flush=True,
        )
    else:
        mode = cpu_mode()
        print(
            "no CUDA device: the CUDA checks are SKIPPED (nothing about a GPU is measured here). Running the "
            "same code on the CPU with the tiny configuration for 2 steps instead.",
            flush=True,
        )
    work = args.work or Path(tempfile.mkdtemp(prefix="comode-gpu-check-"))
    try:
        measure(mode, work)
    except Exception as error:  # noqa: BLE001 -- the check's verdict, not a traceback wall
        sys.exit(f"gpu-check FAILED on {mode.device}: {type(error).__name__}: {error}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu-check: {'OK' if mode.device == 'cuda' else 'CPU mode OK (CUDA skipped)'}")


if __name__ == "__main__":
    main()
