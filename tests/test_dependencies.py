"""Dependency hygiene: every package comode imports is declared (a requirement or an extra),
and an optional backend selected without its extra says how to install it."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], set[str]]:
    """(distributions required, distributions of the extras), names normalised."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def name(requirement: str) -> str:
        return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    extras = {name(r) for group, reqs in project["optional-dependencies"].items() if group != "test" for r in reqs}
    return {name(r) for r in project["dependencies"]}, extras


def _imported_top_level_modules() -> set[str]:
    modules = set()
    for path in (REPO / "comode").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "comode"}


def test_every_imported_package_is_declared():
    required, extras = _declared()
    distributions = importlib.metadata.packages_distributions()
    # What a declared distribution brings along by contract (dask[distributed] -> distributed,
    # s3fs -> botocore through aiobotocore).
    brought = {"distributed": "dask", "botocore": "s3fs"}
    undeclared = []
    for module in sorted(_imported_top_level_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & (required | extras) and brought.get(module) not in required | extras:
            undeclared.append(f"{module} ({', '.join(sorted(names))})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_cross_check_backend_without_its_extra_says_how_to_install_it(monkeypatch):
    """Uninstalling a package is not possible inside the suite: its import machinery is told
    the package is absent."""
    from comode.extract.settings import ExtractSettings

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "mvextractor" else real(name, *args)
    )
    with pytest.raises(ValueError, match=r"pip install 'comode\[mvextractor\]'"):
        ExtractSettings(mv_backend="mvextractor")
    ExtractSettings(mv_backend="pyav")  # the default needs no extra


def test_the_package_version_is_pyprojects():
    """comode.version holds a literal (reading the installed metadata costs every import);
    it must say what pyproject.toml says."""
    from comode.version import __version__

    assert __version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
