"""The package's modules form layers: no import cycles, and the core never imports the layers above it."""

from __future__ import annotations

from tests.imports import cycles, import_graph

CORE = {"classcontrast.errors", "classcontrast.contrasts", "classcontrast.state", "classcontrast.hooks",
        "classcontrast.layers", "classcontrast.targets", "classcontrast.explanation", "classcontrast.engine"}
ABOVE_CORE = ("classcontrast.cli", "classcontrast.evaluation", "classcontrast.reproduce", "classcontrast.viz",
              "classcontrast.adapters", "classcontrast.data", "classcontrast.models", "classcontrast.training",
              "classcontrast.confusion", "classcontrast.explorer")
# Jupyter asks an explanation for its HTML: the one upward call, made when it is displayed
ALLOWED = {("classcontrast.explanation", "classcontrast.explorer.notebook")}


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_core_uses_only_layers_below_it() -> None:
    graph = import_graph()
    for module in CORE:
        above = sorted(m for m in graph[module] if m.startswith(ABOVE_CORE) and (module, m) not in ALLOWED)
        assert not above, f"{module} imports {above}"


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
