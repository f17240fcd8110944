"""The command lines that tests run as real processes, spelled once.

A renamed flag then breaks one place, and each test shows only what is particular to it.
``*_args`` functions return the arguments after ``comode``; :func:`comode_command` puts
the interpreter in front.  Every argument is turned into a string, so paths pass as they are.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMODE = [sys.executable, "-m", "comode"]
TINY_CONFIG = REPO / "configs/pretrain/tiny_cpu.yaml"
# A pretraining small enough for a 2-core test: 64-pixel clips of the tiny config, batch 2.
TINY_PRETRAIN = [
    "optim.warmup_epochs=0",
    "data.batch_size=2",
    "data.size=64",
    "data.workers=1",
    "model.backbone=r3d_18",
]

# The smallest model that trains on 32-pixel clips in a few seconds on 2 cores (fault tests:
# what a run must still do after a fault; no result).
TINY_MODEL = [
    "model.width_multiplier=0.0625",
    "model.transformer_dim=32",
    "model.embed_dim=16",
    "model.head_hidden=64",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.heads=2",
    "data.batch_size=2",
    "data.workers=0",
    "model.backbone=r3d_18",
    "data.size=32",
    "data.split=null",
    "data.subset=null",
    "optim.warmup_epochs=0",
    "sync_batchnorm=false",
]


def comode_command(*args: object) -> list[str]:
    """``python -m comode ARGS``."""
    return [*COMODE, *map(str, args)]


def extract_folder_args(root: object, out: object, *options: object) -> list[str]:
    """``extract --dataset folder --root ROOT --out OUT OPTIONS``."""
    return [str(a) for a in ("extract", "--dataset", "folder", "--root", root, "--out", out, *options)]


def pretrain_tiny_args(store: object, out: object, *overrides: object) -> list[str]:
    """``train pretrain`` of the tiny config on ``store`` into ``out``: :data:`TINY_PRETRAIN`, then ``overrides``."""
    command = ("train", "pretrain", "--store", store, "--config", TINY_CONFIG, "--out", out, *TINY_PRETRAIN, *overrides)
    return [str(a) for a in command]


def run_ffmpeg(*args: object, exe: str | None = None, timeout: float = 300) -> None:
    """``ffmpeg -y ARGS`` (``exe``: comode's ffmpeg by default); a failure raises with ffmpeg's
    own error lines, so a test that cannot make its input says why."""
    from comode.extract.encode import ffmpeg_exe

    command = [exe or ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)]
    result = subprocess.run(command, timeout=timeout, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}: {result.stderr.strip()[-2000:]}")


# Two frames of 8K (7680x4320) MPEG-4 at the coarsest quantiser: a small file, a large decode.
EIGHT_K_MPEG4 = "-f lavfi -i testsrc2=size=7680x4320:rate=25:duration=0.08 -c:v mpeg4 -q:v 31".split()
