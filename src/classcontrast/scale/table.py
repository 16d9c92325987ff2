"""The one Arrow schema of a dataset's explanations: a row per (image, unit, target, contrast, method).

Columns: the image's ``id``, ``path``, content ``stamp`` (a hash of its bytes and label: what a resumed run checks),
``label`` and ``label_name`` (null without labels), the model's ``predicted`` class and ``predicted_name``; the
``method`` and ``contrast``; the unit's place ``unit`` on its image, its ``unit_kind`` and its other fields as JSON
(``unit_fields``: a box, a label, a score...; a boolean array such as a region's or an instance's mask as COCO's
uncompressed run-length encoding, `rle`); the ``target`` and
``target_name``; the contrast's value ``score``, the target's ``probability``; the map, row-major, as ``map`` (a list
of float32, null when maps are not kept) with its ``map_shape``, at the input's or the layer's resolution
(``map_level``; an audit's shown maps: ``page``, `classcontrast.confusion.table`). A user's own columns (Ray Data's
batches may carry any) come first, as given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAP_LEVELS = ("input", "layer", "none")
MAP_DTYPES = ("float32", "float16")


def schema(map_dtype: str = "float32", extra: Sequence[tuple[str, Any]] = ()) -> Any:
    """The pyarrow schema of the rows (``extra``: a user's own (name, type) columns, first)."""
    import pyarrow as pa

    value = pa.float16() if map_dtype == "float16" else pa.float32()
    return pa.schema([*extra,
                      ("id", pa.string()), ("path", pa.string()), ("stamp", pa.string()), ("label", pa.int64()),
                      ("label_name", pa.string()), ("predicted", pa.int64()), ("predicted_name", pa.string()),
                      ("method", pa.string()), ("contrast", pa.string()), ("unit", pa.int32()),
                      ("unit_kind", pa.string()), ("unit_fields", pa.string()), ("target", pa.int64()),
                      ("target_name", pa.string()), ("score", pa.float64()), ("probability", pa.float64()),
                      ("map_level", pa.string()), ("map_shape", pa.list_(pa.int32())), ("map", pa.list_(value))])


def rle(mask: Any) -> dict[str, Any]:
    """A boolean array as COCO's uncompressed run-length encoding: ``{"size": shape, "counts": [...]}``, the lengths
    of alternating runs of 0 and 1 (starting with 0) in column-major (Fortran) order — for a 2-D mask exactly what
    pycocotools' ``mask.frPyObjects`` decodes; any other number of dimensions the same way."""
    flat_mask = np.asarray(mask, dtype=bool).reshape(-1, order="F")
    edges = np.flatnonzero(np.diff(flat_mask.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [flat_mask.size]])
    counts = np.diff(bounds).tolist() if flat_mask.size else []
    if flat_mask.size and flat_mask[0]:
        counts = [0, *counts]
    return {"size": list(np.shape(mask)), "counts": [int(c) for c in counts]}


def unrle(encoded: Mapping[str, Any]) -> np.ndarray:
    """The boolean array of a `rle` encoding."""
    counts = np.asarray(encoded["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(encoded["size"], order="F")


def unit_fields(unit: Mapping[str, Any]) -> str:
    """A unit's row (`Unit.row`) as JSON: plain numbers, strings and lists; a boolean array (a mask) as its `rle`,
    any other array left out."""
    plain = {k: rle(v) if isinstance(v, np.ndarray) and v.dtype == bool else v for k, v in unit.items()
             if k not in ("kind", "target") and (not isinstance(v, np.ndarray) or v.dtype == bool)}
    return json.dumps(plain, sort_keys=True)


def flat(row: Mapping[str, Any], image: Mapping[str, Any], level: str, map_dtype: str) -> dict[str, Any]:
    """One table row from an `Explanation.rows` record and its image's columns (``id``, ``path``, ``stamp``,
    ``label``, ``label_name``, ``predicted``, ``predicted_name`` and a user's own)."""
    key = "map" if level == "input" else "layer_map"
    values = row.get(key) if level != "none" else None
    unit = row["unit"]
    out = dict(image)
    out.update(method=row["method"], contrast=row["contrast"], unit=int(row["place"]), unit_kind=unit["kind"],
               unit_fields=unit_fields(unit), target=row["target"], target_name=row["target_name"],
               score=row["score"], probability=row["probability"], map_level=level if values is not None else None,
               map_shape=None if values is None else list(values.shape),
               map=None if values is None else np.ascontiguousarray(values, dtype=map_dtype).reshape(-1))
    return out


def utf8(value: Any) -> Any:
    """A string Parquet can hold: a file name's bytes that are not UTF-8 (Python's surrogate escapes) written as
    ``\\xNN``, as the terminal shows them; any other value as it is."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def to_table(rows: Sequence[Mapping[str, Any]], map_dtype: str = "float32",
             extra: Sequence[tuple[str, Any]] = ()) -> Any:
    """The rows as one pyarrow Table of `schema` (an empty list: an empty table of that schema)."""
    import pyarrow as pa

    s = schema(map_dtype, extra)
    columns = {f.name: [utf8(r.get(f.name)) for r in rows] for f in s}
    return pa.Table.from_pydict(columns, schema=s)


__all__ = ["MAP_DTYPES", "MAP_LEVELS", "flat", "rle", "schema", "to_table", "unit_fields", "unrle", "utf8"]
