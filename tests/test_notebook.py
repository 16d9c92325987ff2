"""The tutorial notebook: stored with its outputs (it reads on a code host), public API only, and current —
executing it again gives the same outputs (numbers within their printed precision, figures within a
small pixel tolerance; see ``tools/tutorial.py``, which refreshes it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "tutorial.ipynb"


def test_the_tutorial_is_stored_with_outputs_and_uses_the_public_api() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    source = "\n".join(c.source for c in code)
    assert re.findall(r"^(?:import|from) (\S+)", source, re.M) == ["classcontrast"]  # `import classcontrast as cc`
    assert "IMAGE = " in code[0].source and "cc.load_image(IMAGE)" in code[0].source  # the reader's image first
    assert str(ROOT) not in NOTEBOOK.read_text() and "/tmp/" not in NOTEBOOK.read_text()  # no machine paths


def test_the_stored_outputs_are_current(tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    import nbformat
    from tools.tutorial import differences, execute

    fresh = execute()
    outputs = [o for c in fresh.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "tiger cat" in text and "top-1 vs top-2" in text
    assert "with zeros: the random map beats GradCAM" in text and "with road: the random map trails GradCAM" in text
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("ClassContrastViewer.mount" in o["data"]["text/html"] for o in html)  # the viewer, inline
    found = differences(nbformat.read(NOTEBOOK, as_version=4), fresh)
    assert not found, "the stored tutorial is stale (run python tools/tutorial.py):\n" + "\n".join(found)
