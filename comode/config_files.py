"""Typed, frozen settings from YAML files and ``a.b=value`` overrides: the one parser
behind every config of comode (pretraining's :mod:`comode.train.config`, finetuning's
:mod:`comode.evaluate.finetune_config`).

    values = config_values("configs/pretrain/demo_cpu.yaml", ["optim.steps=10"])   # nested dict
    config = build_dataclass(PretrainConfig, values, prefix="")                      # typed, checked

Unknown keys are refused with the valid ones listed; a value must fit its field's type
annotation (ints stay ints, "1e-3" becomes a float, numbers become strings for str fields).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

__all__ = ["ConfigError", "build_dataclass", "config_values"]


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


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
