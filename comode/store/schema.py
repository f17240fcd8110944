"""Validate store attributes against the JSON Schemas in ``comode/store/schemas/`` (the language-neutral
contract, documented in the repository's ``schemas/README.md``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

from comode.store import layout


class SchemaError(ValueError):
    """Store attributes do not match the schema; the message names the attribute and the rule."""


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """Load ``<name>.schema.json``: package data of ``comode.store`` (``comode/store/schemas/``,
    documented in the repository's ``schemas/README.md``), so an installed wheel has them."""
    return json.loads(resources.files("comode.store").joinpath("schemas", f"{name}.schema.json").read_text())


def _validate(instance: dict[str, Any], schema_name: str, where: str) -> None:
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors[:10]]
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise SchemaError(f"{where}: attributes do not match {schema_name}.schema.json:\n" + "\n".join(lines) + more)


def check_root_attrs(attrs: dict[str, Any], *, where: str) -> None:
    """Refuse unknown schemas and major versions with a clear message, then validate fully."""
    schema = attrs.get(layout.ATTR_SCHEMA)
    if not isinstance(schema, str) or "/" not in schema:
        raise SchemaError(
            f"{where}: not a comode store (root attribute 'schema' is {schema!r}, expected {layout.SCHEMA!r})"
        )
    name, _, major = schema.partition("/")
    if name != layout.SCHEMA_NAME:
        raise SchemaError(f"{where}: schema {schema!r} is not a comode store ({layout.SCHEMA!r})")
    if major != str(layout.SCHEMA_MAJOR):
        raise SchemaError(
            f"{where}: store schema major version {major} is not supported by this comode "
            f"(reads {layout.SCHEMA}); upgrade comode or re-extract the store"
        )
    _validate(attrs, "root", where)


def check_video_attrs(attrs: dict[str, Any], *, where: str) -> None:
    _validate(attrs, "video", where)
