"""The audit as rows of the one dataset schema (`classcontrast.scale.table`), in ``audit.parquet``: what DuckDB or
pandas query without Python's help.

* one row per image and class of its top five (the first phase): ``method`` and ``contrast`` null, ``target`` the
  class, ``probability`` its probability, ``unit_fields`` ``{"rank": r}`` (0: the prediction);
* one row per shown image, method, offered class and contrast (the second phase): ``contrast`` a named contrast or
  ``foil:NAME``, the map as the page stores it (``map_level`` ``"page"``: a CAM's layer map as it is, an input map
  averaged over k × k blocks to at most `classcontrast.explorer.encode.MAX_SIDE` a side), ``unit_fields``
  ``{"pair": i, "shown": "mistake" | "correct"}`` (the pair's place among the audit's pairs). ``score`` is null: the
  page keeps the maps and probabilities, not the contrasts' values.

Multi-label audits' label sets are in ``audit_samples.jsonl``; their rows here carry ``label`` null.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..explorer.page import contrast_keys
from ..scale.table import to_table

PAGE_LEVEL = "page"  # the maps of the audit's page, at the resolution it stores


def _image(r: dict[str, Any], sample: Any, names: list[str]) -> dict[str, Any]:
    label = r["label"] if "labels" not in r else None
    return {"id": r["id"], "path": r["path"], "stamp": sample.stamp(), "label": label,
            "label_name": None if label is None else names[label], "predicted": r["predicted"],
            "predicted_name": names[r["predicted"]]}


def audit_rows(result: Any, samples: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``audit.parquet`` (see the module docstring) from an `Audit` and its samples by id."""
    names = list(result.classes)
    rows = []
    for r in result.rows:
        image = _image(r, samples[r["id"]], names)
        rows += [{**image, "unit": 0, "unit_kind": "image", "unit_fields": json.dumps({"rank": k}), "target": c,
                  "target_name": names[c], "probability": p} for k, (c, p) in enumerate(r["top"])]
    for s in result.slots:
        image = _image(s.row, samples[s.row["id"]], names)
        got = result.maps[s.entry]
        keys = [k if not k.startswith("foil:") else f"foil:{names[int(k[5:])]}" for k in contrast_keys(s.classes)]
        fields = json.dumps({"pair": s.pair, "shown": "correct" if s.correct else "mistake"}, sort_keys=True)
        for m in result.methods:
            maps = got["maps"][m]  # (classes, contrasts, h, w)
            for j, c in enumerate(s.classes):
                for i, key in enumerate(keys):
                    rows.append({**image, "method": m, "contrast": key, "unit": 0, "unit_kind": "image",
                                 "unit_fields": fields, "target": c, "target_name": names[c],
                                 "probability": float(got["p"][j]), "map_level": PAGE_LEVEL,
                                 "map_shape": list(maps[j, i].shape),
                                 "map": np.ascontiguousarray(maps[j, i], dtype=np.float32).reshape(-1)})
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows of the dataset schema as one Parquet file, written whole or not at all (a temporary file renamed into
    place)."""
    import pyarrow.parquet as pq

    from ..scale.store import ROW_GROUP

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(to_table(rows), tmp, row_group_size=ROW_GROUP)
    os.replace(tmp, path)
    return path


def write_matrix(path: Path, axes: str, names: list[str], matrix: Any) -> Path:
    """A confusion matrix as CSV (``axes`` in the corner; rows and columns named by ``names``, spreadsheet-safe),
    written whole or not at all."""
    import csv
    import io

    from ..scale.store import write_atomic
    from ..text import spreadsheet_cell

    header = [spreadsheet_cell(n) for n in names]
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow([axes, *header])
    w.writerows([name, *map(int, row)] for name, row in zip(header, matrix, strict=True))
    write_atomic(path, buf.getvalue().encode("utf-8"))
    return path


def write_audit_table(path: Path, result: Any, samples: dict[str, Any]) -> Path:
    """``audit.parquet`` (see the module docstring)."""
    return write_rows(path, audit_rows(result, samples))


__all__ = ["PAGE_LEVEL", "audit_rows", "write_audit_table", "write_matrix", "write_rows"]
