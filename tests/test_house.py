"""The house rules that keep the code easy to live in (docs/architecture.md), checked in CI
beside the layering contracts of ``lint-imports``:

- no import circle: two modules in a circle cannot be read, tested or moved one without
  the other (every import counts, a function-local or a ``TYPE_CHECKING`` one too);
- no module of the package, its tests or benchmarks over 450 lines: past that, one file
  holds several jobs;
- a README a newcomer reads in one sitting (160 lines); the rest lives in docs/.
"""

from __future__ import annotations

import graphlib
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 450
MAX_README_LINES = 160


def test_no_module_of_comode_imports_itself_in_a_circle():
    graph = grimp.build_graph("comode")
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as error:
        raise AssertionError(f"import circle: {' -> '.join(error.args[1])}") from None


def test_no_module_is_over_450_lines():
    modules = [path for folder in ("comode", "tests", "benchmarks") for path in (REPO / folder).rglob("*.py")]
    assert len(modules) > 100  # the tree was found
    too_long = {
        str(path.relative_to(REPO)): lines
        for path in modules
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {too_long}"


def test_the_readme_fits_one_sitting():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"
