"""The tutorial notebook, executed and stored with its outputs (so it reads on a code host), and the check
that the stored outputs are current.

    python tools/tutorial.py            # execute examples/tutorial.ipynb in a temporary folder, store it
    python tools/tutorial.py --check    # execute a copy and compare with the stored outputs

Outputs compare cell by cell: the same kinds of output; text equal except numbers, which may differ by
``NUMBER_TOLERANCE`` (relative) or one unit of their last printed digit; images the same size with a mean
absolute difference under ``IMAGE_TOLERANCE`` (0..1 scale); the interactive viewer's HTML only for being
there (its element ids are random).
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"
NUMBER = re.compile(r"[-+]?\d+\.\d+|[-+]?\d+")
NUMBER_TOLERANCE = 0.02
IMAGE_TOLERANCE = 0.02


def execute(path: Path = NOTEBOOK) -> Any:
    """The notebook executed in a fresh temporary folder (its files are written there)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as d:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": d}}).execute()
    for cell in nb.cells:  # no execution metadata (timestamps) in the stored file
        cell.get("metadata", {}).pop("execution", None)
    return nb


def _numbers_close(a: str, b: str) -> bool:
    na, nb = NUMBER.findall(a), NUMBER.findall(b)
    if NUMBER.sub("#", a) != NUMBER.sub("#", b) or len(na) != len(nb):
        return False
    for x, y in zip(na, nb, strict=True):
        digits = len(x.split(".")[1]) if "." in x else 0
        unit = 10.0 ** -digits
        if abs(float(x) - float(y)) > max(NUMBER_TOLERANCE * abs(float(x)), unit * 1.01):
            return False
    return True


def _image_difference(a: str, b: str) -> float:
    import numpy as np
    from PIL import Image

    ia = np.asarray(Image.open(io.BytesIO(base64.b64decode(a))).convert("RGB"), dtype=np.float64) / 255
    ib = np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"), dtype=np.float64) / 255
    return float("inf") if ia.shape != ib.shape else float(np.abs(ia - ib).mean())


def differences(stored: Any, fresh: Any) -> list[str]:
    """What differs between the stored and a freshly executed notebook (empty: current)."""
    out = []
    code = [(i, c) for i, c in enumerate(stored.cells) if c.cell_type == "code"]
    again = [c for c in fresh.cells if c.cell_type == "code"]
    if len(code) != len(again):
        return ["the notebooks have different cells"]
    for (i, a), b in zip(code, again, strict=True):
        kinds_a, kinds_b = [o.output_type for o in a.outputs], [o.output_type for o in b.outputs]
        if kinds_a != kinds_b:
            out.append(f"cell {i}: outputs {kinds_a} -> {kinds_b}")
            continue
        for oa, ob in zip(a.outputs, b.outputs, strict=True):
            if oa.output_type == "stream" and not _numbers_close(oa.text, ob.text):
                out.append(f"cell {i}: text {oa.text!r} -> {ob.text!r}")
            data_a, data_b = oa.get("data", {}), ob.get("data", {})
            if sorted(data_a) != sorted(data_b):
                out.append(f"cell {i}: output kinds {sorted(data_a)} -> {sorted(data_b)}")
            elif "image/png" in data_a and \
                    _image_difference(data_a["image/png"], data_b["image/png"]) > IMAGE_TOLERANCE:
                out.append(f"cell {i}: the figure changed")
            elif "text/plain" in data_a and "image/png" not in data_a and "text/html" not in data_a \
                    and not _numbers_close(data_a["text/plain"], data_b["text/plain"]):
                out.append(f"cell {i}: value {data_a['text/plain']!r} -> {data_b['text/plain']!r}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare a fresh execution with the stored outputs")
    args = parser.parse_args()
    import nbformat

    fresh = execute()
    if args.check:
        found = differences(nbformat.read(NOTEBOOK, as_version=4), fresh)
        print("\n".join(found) or "the stored outputs are current")
        sys.exit(1 if found else 0)
    nbformat.write(fresh, NOTEBOOK)
    print(f"wrote {NOTEBOOK} with its outputs")


if __name__ == "__main__":
    main()
