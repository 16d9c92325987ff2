"""``pairs.html``: every confused pair of a classifier's audit, rendered from ``audit.parquet`` and ``audit.json``
alone — the pairs the explorer (``audit.html``) explains first, then all the others, each with its images linked
(the first `LISTED` of a pair; the rest are one DuckDB query away, printed under it). It runs no model and ranks
nothing anew: a labelled audit's pair is an image's (label, prediction) with label ≠ prediction, an unlabelled
one's its (top-2, top-1) when p(top-2) / p(top-1) reaches the audit's ``ambiguity``, as the audit counted them.
Multi-label audits keep their label sets in ``audit_samples.jsonl``: their page is the explorer alone."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..text import count

LISTED = 100  # images listed under each pair


def _first_phase(rows: Sequence[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per image id, its top classes by rank (the first phase's rows)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r["method"] is None and r["unit_fields"]:
            out.setdefault(r["id"], {})[json.loads(r["unit_fields"])["rank"]] = r
    return out


def confused_pairs(rows: Sequence[dict[str, Any]], audit: dict[str, Any]) -> dict[tuple[int, int], list[Any]]:
    """(true or second class, predicted class) -> its images as (id, path, p(predicted)), most confident first."""
    pairs: dict[tuple[int, int], list[Any]] = {}
    for image_id, ranks in _first_phase(rows).items():
        first = ranks.get(0)
        if first is None:
            continue
        if first["label"] is not None:
            key = (first["label"], first["predicted"]) if first["label"] != first["predicted"] else None
        else:
            second = ranks.get(1)
            ambiguity = audit.get("ambiguity", 0.25)
            key = None if second is None or second["probability"] < ambiguity * first["probability"] else (
                second["target"], first["target"])
        if key is not None:
            pairs.setdefault(key, []).append((image_id, first["path"], first["probability"]))
    for images in pairs.values():
        images.sort(key=lambda t: (-t[2], t[0]))
    return pairs


def _link(path: str | None, folder: Path, text: str) -> str:
    if not path:
        return html.escape(text)
    href = quote(os.path.relpath(path, folder).replace(os.sep, "/"))
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def pairs_page(rows: Sequence[dict[str, Any]], audit: dict[str, Any], folder: Path) -> str:
    """The page's HTML (see the module docstring); links relative to ``folder``, where the page is written."""
    e = html.escape
    names = audit.get("classes") or []
    shown = {(p.get("true_index", p.get("second_index")), p.get("predicted_index", p.get("first_index"))): k
             for k, p in enumerate(audit["pairs"])}
    pairs = confused_pairs(rows, audit)
    order = sorted(pairs, key=lambda k: (k not in shown, shown.get(k, 0), -len(pairs[k]), k))
    taken = "taken for" if audit.get("labelled", True) else "second to"
    parts = []
    for n, (b, a) in enumerate(order, 1):
        images = pairs[(b, a)]
        where = (f' · <a href="audit.html">explained in audit.html (pair {shown[(b, a)] + 1})</a>'
                 if (b, a) in shown else "")
        listed = "".join(f"<li>{_link(path, folder, image_id)} p={p:.3f}</li>" for image_id, path, p in images[:LISTED])
        rest = "" if len(images) <= LISTED else (
            f"<p>{len(images) - LISTED} more: <code>SELECT id, path, probability FROM 'audit.parquet' WHERE method "
            f"IS NULL AND unit_fields = '{{\"rank\": 0}}' AND label = {b} AND predicted = {a}</code></p>")
        parts.append(f'<details id="pair-{n}"><summary>{n}. {e(names[b])} {taken} {e(names[a])}: '
                     f"{count(len(images), 'image')}{where}</summary><ol>{listed}</ol>{rest}</details>")
    return ("<!doctype html><meta charset=utf-8><title>confused pairs</title><style>body{font:14px system-ui,"
            "sans-serif;margin:1.5em}summary{cursor:pointer;padding:2px 0}</style>"
            f"<h1>Every confused pair: {e(str(audit.get('model', '')))}</h1><p>{count(len(order), 'pair')}; the "
            f"first {count(len(shown), 'is', 'are')} explained in <a href=\"audit.html\">audit.html</a>.</p>"
            + "".join(parts))


def write_pairs_page(path: Path, parquet: Path, audit: dict[str, Any]) -> Path:
    """``pairs.html`` from ``audit.parquet`` and the content of ``audit.json`` (written whole or not at all)."""
    import pyarrow.parquet as pq

    from ..scale.store import write_atomic

    columns = ["id", "path", "label", "predicted", "method", "unit_fields", "target", "probability"]
    rows = pq.read_table(parquet, columns=columns).to_pylist()  # (the maps left unread)
    write_atomic(path, pairs_page(rows, audit, path.parent).encode())
    return path


__all__ = ["LISTED", "confused_pairs", "pairs_page", "write_pairs_page"]
