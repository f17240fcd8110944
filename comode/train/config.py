"""Pretraining configuration: frozen dataclasses, the single source of every default.

nanoGPT-style: a run is fully described by one :class:`PretrainConfig`.  Its sections live
beside the code they configure: ``data`` (:class:`comode.data.config.DataConfig`),
``model`` and ``loss`` (:mod:`comode.models.config`); ``optim`` and the run's own fields are
here.  A YAML file
(``configs/pretrain/*.yaml``) and ``a.b=value`` command-line overrides only change fields of
it, and the resolved result is written next to the run as ``config.yaml``.  Defaults are
the paper's (Huang et al., CVPR 2021, arXiv 2104.00862, Sec. 4.1) unless a comment says
they come from the authors' released code or are a choice of ours.

    config = load_config("configs/pretrain/r3d26_ucf101.yaml", ["optim.epochs=10", "data.batch_size=32"])
    comode.train.rundir.save_resolved(config, out_dir)   # -> out_dir/config.yaml, loadable with load_config
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Literal, Mapping, Sequence

from comode.config_files import ConfigError, build_dataclass, config_values
from comode.data.config import MAX_CLIP_FRAMES, MAX_CLIP_STRIDE, MAX_SIZE, DataConfig
from comode.models.config import LossConfig, ModelConfig

__all__ = [
    "ConfigError",
    "OptimConfig",
    "PretrainConfig",
    "TASKS",
    "SUPERVISED_AUX_OVERRIDES",
    "RESUMABLE_FIELDS",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_differences",
]

Task = Literal["pretrain", "supervised_aux"]
TASKS: tuple[str, ...] = typing.get_args(Task)

# What `train supervised` means: the auxiliary-regularisation experiment of the paper's
# Table 6 -- cross-entropy on labels plus the motion-prediction loss; no context matching.
# The CLI puts these before the user's own overrides.
SUPERVISED_AUX_OVERRIDES: tuple[str, ...] = ("task=supervised_aux", "model.use_context=false")

# Fields that may differ between a run and its --resume: they change how long it runs or
# how it is fed and logged, never what one training step computes.
RESUMABLE_FIELDS: frozenset[str] = frozenset(
    {"max_steps", "checkpoint_every_epochs", "save_every_steps", "data.workers"}
)


@dataclass(frozen=True)
class OptimConfig:
    # Pretraining length on UCF101 (paper Sec. 4.1).
    epochs: int = 120
    # Linear scaling rule: lr = lr_per_sample x global batch (paper Sec. 4.1: 0.0005 x batch,
    # i.e. 0.032 at batch 64), so changing the batch keeps the per-sample step size.
    lr_per_sample: float = 0.0005
    # SGD momentum (paper Sec. 4.1).
    momentum: float = 0.9
    # Nesterov momentum (authors' code; the paper only says SGD with momentum).
    nesterov: bool = True
    # L2 weight decay on every parameter.  The paper says 0.005; the authors' released code
    # uses 1e-3 -- we follow the paper, override with optim.weight_decay=1e-3 to match the code.
    weight_decay: float = 0.005
    # Linear warm-up from ~0 to the base lr over this many epochs, then cosine decay to 0
    # over the rest, updated every step (paper Sec. 4.1: 5 warm-up epochs, cosine schedule).
    warmup_epochs: float = 5.0
    # Clip the global gradient L2 norm to this value (authors' code: 15); null = no clipping.
    grad_clip_norm: float | None = 15.0
    # Length of the run in optimizer steps, whatever the dataset's size (the schedule spans
    # exactly these steps; epochs = ceil(steps / steps per epoch), the last one cut short).
    # null = optim.epochs whole epochs.  A fixed budget keeps a config's cost and its
    # learning the same on a dataset of 100 or of 10,000 clips.
    steps: int | None = None


@dataclass(frozen=True)
class PretrainConfig:
    # "pretrain": the paper's self-supervised objective (context matching + motion
    # prediction).  "supervised_aux": cross-entropy on the store's labels with a linear
    # classifier on the pooled V-Network features, plus supervised_aux_weight x the enabled
    # pretext losses (paper Table 6); see SUPERVISED_AUX_OVERRIDES.
    task: Task = "pretrain"
    # One seed for everything: model init, data order, clip sampling, augmentation, dropout.
    # Each step's randomness is derived from (seed, step, rank), so a resumed run repeats
    # an uninterrupted one exactly.
    seed: int = 0
    # Stop after this many optimizer steps (short runs, smoke tests); null = all epochs.
    # The lr schedule still spans all epochs, so a stopped run can be resumed unchanged.
    max_steps: int | None = None
    # Keep a copy of the checkpoint as epoch_XXX.pt every N epochs; 10 keeps 12 snapshots
    # of a 120-epoch run.
    checkpoint_every_epochs: int = 10
    # Rewrite last.pt every N steps, so a crash loses at most N steps (a Kinetics-400
    # epoch is ~3,700 steps at batch 64); null = at every epoch end instead.  Not at epoch
    # ends too: on a small store an epoch is one step, and an 11 MB write every step.
    save_every_steps: int | None = 1000
    # BatchNorm statistics over the GLOBAL batch when W > 1 ranks (SimCLR's global BN):
    # results then do not depend on the number of GPUs, and no rank-local statistics leak
    # into the contrastive task.  No effect on a single process.
    sync_batchnorm: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        problems = _validation_problems(self)
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))

    @property
    def base_lr(self) -> float:
        """lr after warm-up: lr_per_sample x global batch (linear scaling rule)."""
        return self.optim.lr_per_sample * self.data.batch_size


def _validation_problems(config: PretrainConfig) -> list[str]:
    checks = [
        (config.task in TASKS, f"task must be one of {list(TASKS)}, got {config.task!r}"),
        (config.data.batch_size > 0, "data.batch_size must be > 0"),
        (0 < config.data.size <= MAX_SIZE, f"data.size must be in [1, {MAX_SIZE}] pixels (the paper: 112)"),
        (config.data.workers >= 0, "data.workers must be >= 0"),
        (
            1 <= config.data.clip_frames <= MAX_CLIP_FRAMES and 1 <= config.data.clip_stride <= MAX_CLIP_STRIDE,
            f"data.clip_frames must be in [1, {MAX_CLIP_FRAMES}] and data.clip_stride in [1, {MAX_CLIP_STRIDE}]",
        ),
        (
            config.data.mv_size is None or 0 < config.data.mv_size <= MAX_SIZE,
            f"data.mv_size must be in [1, {MAX_SIZE}] or null",
        ),
        (0 < config.data.crop_scale <= 1, "data.crop_scale must be in (0, 1]"),
        (0 <= config.data.negative_min_distance < 1, "data.negative_min_distance must be in [0, 1)"),
        (config.optim.steps is None or config.optim.steps > 0, "optim.steps must be > 0 or null"),
        (config.optim.epochs > 0, "optim.epochs must be > 0"),
        (config.optim.lr_per_sample > 0, "optim.lr_per_sample must be > 0"),
        (0 <= config.optim.momentum < 1, "optim.momentum must be in [0, 1)"),
        (0 <= config.optim.warmup_epochs <= config.optim.epochs, "optim.warmup_epochs must be in [0, optim.epochs]"),
        (
            config.optim.grad_clip_norm is None or config.optim.grad_clip_norm > 0,
            "optim.grad_clip_norm must be > 0 or null",
        ),
        (config.loss.temperature > 0, "loss.temperature must be > 0"),
        (0 <= config.loss.alpha <= 1, "loss.alpha must be in [0, 1]"),
        (config.loss.supervised_aux_weight >= 0, "loss.supervised_aux_weight must be >= 0"),
        (
            config.model.use_context or config.model.use_motion,
            "model.use_context and model.use_motion cannot both be false",
        ),
        (config.max_steps is None or config.max_steps > 0, "max_steps must be > 0 or null"),
        (0 <= config.seed < 2**63, "seed must be in [0, 2**63)"),
        (config.checkpoint_every_epochs > 0, "checkpoint_every_epochs must be > 0"),
        (config.save_every_steps is None or config.save_every_steps > 0, "save_every_steps must be > 0 or null"),
    ]
    return [message for ok, message in checks if not ok]


# --------------------------------------------------------------------------------------
# dict <-> dataclass, with typed values and helpful errors
# --------------------------------------------------------------------------------------


def config_to_dict(config: PretrainConfig) -> dict[str, Any]:
    """Nested plain dict (str, int, float, bool, None only): YAML- and checkpoint-safe."""
    return asdict(config)


def config_from_dict(values: Mapping[str, Any]) -> PretrainConfig:
    """Build a config from a nested dict; missing keys keep their defaults.

    Raises:
        ConfigError: unknown key (the message lists the valid ones) or a wrong value type.
    """
    return build_dataclass(PretrainConfig, values, prefix="")


# --------------------------------------------------------------------------------------
# files and overrides
# --------------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Defaults <- YAML file at ``path`` (if any) <- ``overrides`` (``a.b=value``, in order).

    Override values are parsed as YAML: ``optim.epochs=10``, ``max_steps=null``,
    ``model.use_context=false``, ``data.split='1'``.

    Raises:
        ConfigError: unreadable file, malformed override, unknown key, wrong type.
    """
    return config_from_dict(config_values(path, overrides))


def config_differences(
    a: PretrainConfig | Mapping[str, Any], b: PretrainConfig | Mapping[str, Any], *, ignore: Collection[str] = ()
) -> list[str]:
    """Dotted keys whose values differ, e.g. ``["optim.epochs: 120 -> 10"]``, other than
    the dotted keys in ``ignore``."""
    flat_a = _flatten(config_to_dict(a) if isinstance(a, PretrainConfig) else a)
    flat_b = _flatten(config_to_dict(b) if isinstance(b, PretrainConfig) else b)
    return [
        f"{key}: {flat_a.get(key)!r} -> {flat_b.get(key)!r}"
        for key in sorted(set(flat_a) | set(flat_b))
        if key not in ignore and flat_a.get(key) != flat_b.get(key)
    ]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
