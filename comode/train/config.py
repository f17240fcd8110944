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

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Collection, Literal, Mapping, Sequence

import yaml

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


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


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


def build_dataclass(cls: type, values: Mapping[str, Any], *, prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        where = f"in {prefix.rstrip('.')!r}" if prefix else "at the top level"
        raise ConfigError(
            f"unknown config key {prefix + str(unknown[0])!r}; valid keys {where}: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = build_dataclass(kind, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, kind, key=prefix + name)
    return cls(**kwargs)


def _coerce(value: Any, kind: Any, *, key: str) -> Any:
    """Check ``value`` against the annotation ``kind`` (converting int -> float, "1e-3" -> float).

    Hand-written on purpose: pydantic 2 (tried on 20 override values against this routine)
    either accepts what this refuses (lax: ``data.batch_size='8'``, ``model.use_motion=1``) or
    refuses what YAML hands over (strict: ``optim.weight_decay=1e-3``, a string to YAML 1.1;
    ``data.split=2``), and its messages would need translating back to the keys users type.
    """
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(kind), key=key, kind=kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")
        return value
    converted = _SCALARS[kind](value) if kind in _SCALARS else None
    if converted is None:
        raise ConfigError(f"{key} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    if isinstance(converted, float) and not math.isfinite(converted):
        # .nan / .inf pass every "> 0" check and poison training
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return converted


def _coerce_union(value: Any, options: tuple[Any, ...], *, key: str, kind: Any) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in (o for o in options if o is not type(None)):
        try:
            return _coerce(value, option, key=key)
        except ConfigError as error:
            errors.append(str(error))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {kind}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


# What each scalar field type accepts (None: refused).  bool and int take only their own
# type (YAML already parsed the text); str also takes a number (``data.split: 1`` -> "1").
_SCALARS = {
    bool: lambda value: value if isinstance(value, bool) else None,
    int: lambda value: value if isinstance(value, int) and not isinstance(value, bool) else None,
    float: _as_float,
    str: lambda value: value if isinstance(value, str) else str(value) if _is_number(value) else None,
}


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


def config_values(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The nested mapping of a YAML config file (or {}) with ``a.b=value`` overrides applied
    (values parsed as YAML); any config dataclass is then built from it.

    Raises:
        ConfigError: unreadable file, not a mapping, malformed override.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a YAML mapping, got {type(loaded).__name__}")
        values = loaded or {}
    for override in overrides:
        _apply_override(values, override)
    return values


def _apply_override(values: dict[str, Any], override: str) -> None:
    key, separator, text = override.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError(f"override {override!r} must look like key=value, e.g. optim.epochs=10")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({error})") from None
    *parents, leaf = key.split(".")
    node = values
    for parent in parents:
        child = node.setdefault(parent, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {parent!r} is a value, not a section")
        node = child
    node[leaf] = value


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
