"""Evaluation reports: one JSON per evaluation, a human-readable table, and side-by-side comparison.

Every evaluation writes ``<out_dir>/<kind>.json`` (kind: retrieval, linear, finetune)::

    {
      "format": "comode.eval-report/1",
      "kind": "retrieval",
      "name": "runs/r3d26/last.pt",           # what `compare` shows as the column title
      "created": "2026-11-25T09:00:00+00:00",
      "comode_version": "0.1.0",
      "settings": {...},                      # protocol choices: split, center, clips, lr, ...
      "model": {...},                         # checkpoint path + sha256 + backbone, or random init
      "store": {"url": ..., "dataset": ..., "classes": ...},
      "metrics": {"R@1": 0.41, ...},          # fractions in [0, 1]; tables show percent
      "counts": {"queries": ..., "failed": ...},  # how many videos were evaluated / failed
      "failed": {"video_id": "reason", ...}
    }

and ``<out_dir>/<kind>.txt``, the same as a table.  ``compare`` reads reports (files or
run folders) and reference files (the same JSON or YAML with at least ``name`` and
``metrics``, e.g. a paper's published numbers) and prints one column per run.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from comode.version import __version__

__all__ = [
    "REPORT_FORMAT",
    "KINDS",
    "Report",
    "write_report",
    "load_report",
    "report_table",
    "compare_table",
    "render_text",
]

REPORT_FORMAT = "comode.eval-report/1"
KINDS = ("retrieval", "linear", "finetune")


@dataclass
class Report:
    path: Path
    data: dict[str, Any]


def _model_name(model: Mapping[str, Any]) -> str:
    if model.get("kind") == "random":
        return f"random init {model.get('backbone')} x{model.get('width_multiplier')} (seed {model.get('seed')})"
    return str(model.get("path", "?"))


def write_report(
    out_dir: str | Path,
    kind: str,
    *,
    settings: Mapping[str, Any],
    model: Mapping[str, Any],
    store: Mapping[str, Any],
    metrics: Mapping[str, float],
    counts: Mapping[str, int],
    failed: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Report:
    """Write ``<kind>.json`` (atomically) and ``<kind>.txt`` into ``out_dir``."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "format": REPORT_FORMAT,
        "kind": kind,
        "name": name or _model_name(model) + (f" [{store['label_set']}]" if store.get("label_set") else ""),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "comode_version": __version__,
        "settings": dict(settings),
        "model": dict(model),
        "store": dict(store),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "counts": dict(counts),
        "failed": dict(failed or {}),
        **(dict(extra) if extra else {}),
    }
    path = out / f"{kind}.json"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(temporary, path)
    (out / f"{kind}.txt").write_text(render_text(report_table(data)))
    return Report(path=path, data=data)


def load_report(path: str | Path) -> dict[str, Any]:
    """A report (``x.json``), a reference (JSON / YAML with name + metrics) or a run folder.

    A folder means every ``<kind>.json`` report in it, merged (metrics named
    "<kind> <metric>"; name, settings and store from the first in KINDS order).
    Raises ValueError on anything else.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / f"{kind}.json" for kind in KINDS if (path / f"{kind}.json").exists()]
        if not found:
            raise ValueError(f"{path} holds no evaluation report ({', '.join(f'{k}.json' for k in KINDS)})")
        if len(found) == 1:
            return load_report(found[0])
        merged = load_report(found[0])
        merged["metrics"] = {}
        for each in found:
            merged["metrics"].update(_comparable_metrics(load_report(each)))
        merged["kind"] = "+".join(p.stem for p in found)
        return merged
    if not path.is_file():
        raise ValueError(f"no report at {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read report {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ValueError(f"{path} is not an evaluation report or reference (needs a 'metrics' mapping)")
    data.setdefault("name", path.stem)
    data.setdefault("kind", "reference")
    return data


def _percent(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{100 * float(value):.1f}"
    except (TypeError, ValueError):
        return str(value)


def report_table(data: Mapping[str, Any]) -> Table:
    """One report as a table: metrics (percent), then counts and the main settings."""
    table = Table(title=escape(f"{data['kind']}: {data.get('name', '')}"), show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in data["metrics"].items():
        table.add_row(escape(f"{key} (%)"), _percent(value))
    for key, value in data.get("counts", {}).items():
        table.add_row(escape(key), str(value))
    store = data.get("store", {})
    if store:
        table.add_row("store", escape(f"{store.get('url')} ({store.get('dataset')}, {store.get('classes')} classes)"))
    for key, value in data.get("settings", {}).items():
        if not isinstance(value, (dict, list)):
            table.add_row(escape(key), escape(str(value)))
    return table


def _comparable_metrics(data: Mapping[str, Any]) -> dict[str, Any]:
    """Metric names as compared: "<kind> <metric>" for a report (so a retrieval R@1 and a
    linear top1 never share a row); a reference file's keys are taken as written (write
    them the same way, e.g. ``retrieval R@1``)."""
    kind = str(data.get("kind", ""))
    if kind in KINDS:
        return {f"{kind} {key}": value for key, value in data["metrics"].items()}
    return dict(data["metrics"])


def compare_table(reports: Sequence[Mapping[str, Any]]) -> Table:
    """Runs side by side: one row per metric (union, first-seen order), one column per run."""
    table = Table(title="comparison (percent)", show_header=True)
    table.add_column("metric")
    for data in reports:
        table.add_column(escape(str(data.get("name", "?"))), justify="right")
    rows = [_comparable_metrics(data) for data in reports]
    metrics: list[str] = []
    for row in rows:
        metrics += [key for key in row if key not in metrics]
    for key in metrics:
        table.add_row(escape(key), *(_percent(row.get(key)) for row in rows))
    for field, section in (("dataset", "store"), ("split", "settings")):
        values = [data.get(section, {}).get(field) for data in reports]
        table.add_row(f"[dim]{field}[/dim]", *("-" if value is None else escape(str(value)) for value in values))
    return table


def render_text(table: Table, *, width: int = 120) -> str:
    """A rich table as plain text (no colour codes)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.export_text()
