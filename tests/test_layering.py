"""The package's modules form layers: no import cycles, and the core never imports the layers above it."""

from __future__ import annotations

from tests.imports import cycles, import_graph

CORE = {"classcontrast.errors", "classcontrast.contrasts", "classcontrast.state", "classcontrast.hooks",
        "classcontrast.layers", "classcontrast.targets", "classcontrast.explanation", "classcontrast.engine"}
ABOVE_CORE = ("classcontrast.cli", "classcontrast.evaluation", "classcontrast.reproduce", "classcontrast.viz",
              "classcontrast.adapters", "classcontrast.data", "classcontrast.models", "classcontrast.training",
              "classcontrast.confusion", "classcontrast.explorer", "classcontrast.scale", "classcontrast.ray",
              "classcontrast.serve")
ALLOWED: set[tuple[str, str]] = set()  # no upward import (Jupyter's view is registered by the package, not the result)
# the renderers draw results already computed (an Explanation and its unit records): they never reach the engine,
# a method, a model family, the kinds of unit that read a model's output, or the hooks and state of a model call
RENDERERS = ("classcontrast.explorer.render", "classcontrast.explorer.page", "classcontrast.explorer.encode",
             "classcontrast.explorer.notebook", "classcontrast.viz.grid", "classcontrast.viz.overlay")
COMPUTING = ("classcontrast.engine", "classcontrast.methods", "classcontrast.models", "classcontrast.units.base",
             "classcontrast.units.images", "classcontrast.units.regions", "classcontrast.units.objects",
             "classcontrast.units.yolo", "classcontrast.state", "classcontrast.hooks", "classcontrast.layers",
             "classcontrast.backprop")


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_core_uses_only_layers_below_it() -> None:
    graph = import_graph()
    for module in CORE:
        above = sorted(m for m in graph[module] if m.startswith(ABOVE_CORE) and (module, m) not in ALLOWED)
        assert not above, f"{module} imports {above}"


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for m in graph.get(todo.pop(), set()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_the_renderers_never_reach_what_runs_a_model() -> None:
    graph = import_graph()
    for module in RENDERERS:
        assert module in graph, module
        found = sorted(m for m in reachable(graph, module) if m.startswith(COMPUTING))
        assert not found, f"{module} reaches {found}"
    assert reachable({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
