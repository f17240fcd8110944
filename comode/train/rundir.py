"""A training run's folder, shared by pretraining and finetuning: whether it may start or
resume, its resolved config, and its per-step (or per-epoch) metrics file.

    previous = checkpoint_to_resume(out_dir, resume=resume, kind="finetuning")  # None: a fresh run
    save_config(out_dir, values, title="comode finetuning config")
    keep_records_until(out_dir, key="epoch", last=3)  # drop what a killed run logged past its checkpoint
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping

import yaml

from comode.train.checkpoint import LAST_CHECKPOINT, CheckpointError, load_checkpoint
from comode.train.config import PretrainConfig, config_differences, config_to_dict

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "checkpoint_to_resume",
    "holds_a_run",
    "refuse_changes",
    "save_config",
    "save_resolved",
    "keep_records_until",
    "read_records",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
# The first line of every config.yaml comode writes (save_config).
_CONFIG_HEADER = "# Resolved comode "


def holds_a_run(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a run of comode's: a checkpoint, or a config it wrote (a run
    killed before its first checkpoint)."""
    if (Path(out_dir) / LAST_CHECKPOINT).exists():
        return True
    try:
        with open(Path(out_dir) / CONFIG_FILE, encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith(_CONFIG_HEADER)
    except OSError:
        return False


def checkpoint_to_resume(
    out_dir: Path, *, resume: bool, kind: str, required: Collection[str] = ()
) -> dict[str, Any] | None:
    """The checkpoint a run in ``out_dir`` continues from, or None for a fresh run.

    Raises:
        FileExistsError: ``out_dir`` already holds a run and ``resume`` is False.
        CheckpointError: ``resume`` is True and there is nothing to resume (or it is unreadable,
            or lacks one of the ``required`` entries: a KeyError deep in the run otherwise).
    """
    path = Path(out_dir) / LAST_CHECKPOINT
    if not resume:
        if path.exists():
            raise FileExistsError(
                f"{out_dir} already holds a {kind} run ({path}); pass --resume to continue it or choose another --out"
            )
        return None
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist")
    checkpoint = load_checkpoint(path)
    missing = sorted(set(required) - set(checkpoint))
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: it is not a complete {kind} checkpoint")
    return checkpoint


def refuse_changes(
    saved: PretrainConfig | Mapping[str, Any],
    current: PretrainConfig | Mapping[str, Any],
    *,
    out_dir: Path,
    resumable: Collection[str],
) -> None:
    """Raise ValueError naming the settings (``"key: old -> new"``) of ``current`` that differ
    from ``saved``, the config of the run being resumed, other than the (dotted) ``resumable``
    keys: a resumed run must compute the same steps.  Configs are nested or flat mappings
    (or :class:`~comode.train.config.PretrainConfig`), compared by
    :func:`~comode.train.config.config_differences`."""
    changed = config_differences(saved, current, ignore=resumable)
    if changed:
        raise ValueError(
            f"the config differs from the run being resumed ({Path(out_dir) / LAST_CHECKPOINT}): "
            + "; ".join(changed)
            + f". Only {sorted(resumable)} may change on --resume"
        )


def save_config(out_dir: Path, values: Mapping[str, Any], *, title: str) -> Path:
    """Write the resolved config to ``out_dir/config.yaml`` (every field, defaults included)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CONFIG_FILE
    path.write_text(
        f"# Resolved {title} (every field, defaults included).\n" + yaml.safe_dump(dict(values), sort_keys=False)
    )
    return path


def save_resolved(config: PretrainConfig, out_dir: str | Path) -> Path:
    """Write the fully resolved pretraining config to ``out_dir/config.yaml``
    (:func:`comode.train.config.load_config` reads it back)."""
    return save_config(Path(out_dir), config_to_dict(config), title="comode pretraining config")


def read_records(out_dir: Path) -> list[dict[str, Any]]:
    """The records of ``out_dir/metrics.jsonl`` in order (none if it does not exist)."""
    path = Path(out_dir) / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keep_records_until(out_dir: Path, *, key: str, last: int | None) -> None:
    """Drop the metrics records whose ``key`` (step or epoch) is past ``last`` -- logged by a
    run killed before its checkpoint, which the resumed run logs again -- or all of them
    for a fresh run (``last`` None).  A resumed run's file then equals an uninterrupted one's."""
    path = Path(out_dir) / METRICS_FILE
    kept = [] if last is None else [r for r in read_records(out_dir) if r[key] <= last]
    if path.exists() or kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
