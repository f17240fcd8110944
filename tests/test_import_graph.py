"""The package's modules import each other without a circle (CI runs this beside the
layering contracts of ``lint-imports``): a circle means two modules that cannot be read,
tested or moved one without the other.  Every import counts, a function-local or a
``TYPE_CHECKING`` one too."""

from __future__ import annotations

import graphlib

import grimp


def test_no_module_of_comode_imports_itself_in_a_circle():
    graph = grimp.build_graph("comode")
    imports = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as error:
        raise AssertionError(f"import circle: {' -> '.join(error.args[1])}") from None
