"""The layout the redesign keeps (issue 39): no function longer than 80 lines besides its docstring; outside
`classcontrast.units` no module tests which kind a unit is, and outside `classcontrast.units` and
`classcontrast.models` no module names a model family in code or in a string (docstrings and comments may say which
families a behaviour was checked on). Each test also checks that it can fail."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "classcontrast"
FAMILY = re.compile(r"torchvision|\btimm\b|hugging ?face|\btransformers\b|\bhf:|\bdetr\b|yolo|ultralytics|monai|"
                    r"efficientnet|open_?clip|llava|qwen|paligemma|idefics|smolvlm", re.IGNORECASE)
KIND_TEST = re.compile(r"""\[["']kind["']\]\s*[=!]=|get\(["']kind["']\)\s*[=!]=|[=!]=\s*["'](region|object)["']|"""
                       r"""isinstance\([^)]*(ImageUnit|RegionUnit|ObjectUnit)\b""")
# where a family's name belongs: its adapter (models/, with the families' table the command line reads), its units
# (units/), and the study's reproduction, which names the study's networks and reports library versions
# and the research datasets' readers, which are torchvision's dataset classes (data, not a model family)
FAMILY_HOMES = ("units/", "models/", "reproduce/", "training/", "cli/suite_cmd.py",
                "evaluation/plots.py", "data/datasets.py")


def function_lengths(text: str) -> list[tuple[str, int]]:
    """(name, lines besides its docstring — signature, decorators and nested functions counted) of every function."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            doc = 0
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                doc = (body[0].end_lineno or body[0].lineno) - body[0].lineno + 1
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out.append((node.name, (node.end_lineno or node.lineno) - start + 1 - doc))
    return out


def test_no_function_is_longer_than_80_lines() -> None:
    long = [(str(p.relative_to(SRC)), name, n) for p in SRC.rglob("*.py")
            for name, n in function_lengths(p.read_text()) if n > 80]
    assert not long, long
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    assert function_lengths(f'def f():\n    """doc\n    more"""\n{body}\n') == [("f", 81)]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def family_names(text: str) -> list[tuple[int, str]]:
    """(line, name) of every model family named in code or in a string that is not a docstring."""
    tree = ast.parse(text)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [(node.lineno, m.group()) for m in [FAMILY.search(node.value)] if m]
        elif isinstance(node, ast.Name) and FAMILY.search(node.id):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and FAMILY.search(node.attr):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [getattr(node, "module", None) or "", *(a.name for a in node.names)]
            found += [(node.lineno, n) for n in names if FAMILY.search(n)]
    return found


def test_no_generic_module_names_a_family_or_tests_a_units_kind() -> None:
    named, kinds = [], []
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC).as_posix()
        text = p.read_text()
        if not rel.startswith(FAMILY_HOMES):
            named += [(rel, line, name) for line, name in family_names(text)]
        if not rel.startswith("units/"):
            kinds += [(rel, i) for i, line in enumerate(text.splitlines(), 1) if KIND_TEST.search(line)]
    assert not named, named
    assert not kinds, kinds
    assert family_names('"""YOLO in a docstring is fine."""\nx = "yolo:yolov8n.yaml"\n') == [(2, "yolo")]
    assert KIND_TEST.search('if unit["kind"] == "region":') and not KIND_TEST.search('if exp.kind == "masking":')


def test_each_method_follows_exactly_one_protocol() -> None:
    """A registered method is a GradientMethod (its maps from gradients: passes, compute) or a PerturbationMethod
    (from perturbed scores: attribute), never both, and a perturbation method carries no backward-pass settings."""
    from classcontrast.methods import METHODS, GradientMethod, LayerReading, PerturbationMethod

    for name, cls in METHODS.items():
        assert issubclass(cls, GradientMethod) != issubclass(cls, PerturbationMethod), name
        if issubclass(cls, PerturbationMethod):
            assert not any(hasattr(cls, a) for a in ("compute", "passes", "batched_vjp", "multipass")), name
    cams = {n for n, c in METHODS.items() if issubclass(c, LayerReading)}
    assert {"gradcam", "scorecam", "ablationcam"} <= cams and "gradient" not in cams
