"""The page of a region or object audit, rendered from its files alone (``audit.parquet`` and ``audit.json``; the
images read from the paths the rows name): every confused pair with its count — the shown ones linked to their
section — and, per shown unit, the image with the unit drawn (a region's pixels tinted, an object's detected box in
red and its true box in green) beside each method's maps under each contrast (red: for the predicted class over the
other side of the contrast; blue: against it; one scale per map, printed). It runs no model and decides nothing."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..scale.table import unrle
from ..viz.overlay import signed_rgba

SIDE = 160  # each picture's longer side on the page, in CSS pixels


def _png(rgb: np.ndarray | Image.Image) -> str:
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _map_png(values: list[float], shape: list[int]) -> tuple[str, float]:
    """A signed map as a PNG over white (the map's own half-range as its scale) and that scale."""
    m = np.asarray(values, dtype=np.float64).reshape(shape)
    scale = float(np.abs(m).max()) or 1.0
    rgba = signed_rgba(m, scale)
    rgb = (1 - rgba[..., 3:]) * 1.0 + rgba[..., 3:] * rgba[..., :3]
    return _png((np.clip(rgb, 0, 1) * 255).astype(np.uint8)), scale


def _unit_picture(path: str | None, fields: dict[str, Any]) -> str:
    """The image (at the model's view's size when the unit is a region) with the unit drawn on it."""
    if path is None or not os.path.isfile(path):
        return ""
    from ..data.images import load_image

    img = load_image(path)
    if "mask" in fields:
        mask = unrle(fields["mask"])
        img = img.resize((mask.shape[1], mask.shape[0]))
        arr = np.asarray(img, dtype=np.float64)
        arr[mask] = 0.45 * arr[mask] + 0.55 * np.array([255.0, 200.0, 0.0])
        img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for key, colour in (("true_box", (0, 170, 0)), ("box", (220, 0, 0))):
        if key in fields:
            draw.rectangle([float(v) for v in fields[key]], outline=colour, width=max(1, img.width // 150))
    img.thumbnail((SIDE * 2, SIDE * 2))
    return _png(img)


def _section(k: int, pair: dict[str, Any], rows: list[dict[str, Any]], methods: list[str]) -> str:
    e = html.escape
    parts = [f'<section id="pair-{k}"><h2>{k + 1}. {e(pair["true"])} taken for {e(pair["predicted"])}: '
             f'{pair["count"]:g}</h2>']
    units: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        units.setdefault((r["id"], r["unit_fields"]), []).append(r)
    for (image_id, fields_json), got in units.items():
        fields = json.loads(fields_json)
        parts.append(f'<div class="unit"><figure><img src="{_unit_picture(got[0]["path"], fields)}" alt="">'
                     f'<figcaption>{e(image_id)}</figcaption></figure>')
        for m in methods:
            for r in (r for r in got if r["method"] == m):
                url, scale = _map_png(r["map"], r["map_shape"])
                parts.append(f'<figure><img src="{url}" alt=""><figcaption>{e(m)} · {e(r["contrast"])}<br>'
                             f'±{scale:.3g}</figcaption></figure>')
        parts.append("</div>")
    return "".join(parts) + "</section>"


STYLE = ("body{font:14px system-ui,sans-serif;margin:1.5em}figure{display:inline-block;margin:4px;text-align:center}"
         f"figure img{{width:{SIDE}px;image-rendering:pixelated}}.unit{{border-top:1px solid #ccc;padding:6px 0}}"
         "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}")


def units_page(rows: list[dict[str, Any]], audit: dict[str, Any]) -> str:
    """The page's HTML from the audit's rows and ``audit.json``'s content."""
    e = html.escape
    shown = {(p["true_index"], p["predicted_index"]): k for k, p in enumerate(audit["pairs"])}
    counted: dict[tuple[int, int], float] = {}
    for r in rows:
        if r["method"] is None and r["label"] is not None and r["predicted"] is not None \
                and r["label"] != r["predicted"]:
            key = (r["label"], r["predicted"])
            counted[key] = counted.get(key, 0) + json.loads(r["unit_fields"]).get("pixels", 1)
    names = audit["classes"]
    table = "".join(f'<tr><td>{e(names[b])}</td><td>{e(names[a])}</td><td>{n:g}</td><td>'
                    + (f'<a href="#pair-{shown[(b, a)]}">shown</a>' if (b, a) in shown else "") + "</td></tr>"
                    for (b, a), n in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))
    metrics = e("; ".join(f"{k.replace('_', ' ')}: " + (", ".join(f"{n} {v:.3f}" for n, v in value.items())
                                                           if isinstance(value, dict) else
                                                           f"{value:.3f}" if isinstance(value, float) else str(value))
                          for k, value in audit["metrics"].items()))
    sections = [_section(k, p, [r for r in rows if r["method"] is not None
                                and json.loads(r["unit_fields"]).get("pair") == k], audit["methods"])
                for k, p in enumerate(audit["pairs"])]
    unit = e(audit["counted"])
    return (f"<!doctype html><meta charset=utf-8><title>audit: {e(audit['model'])}</title><style>{STYLE}</style>"
            f"<h1>{e(audit['model'])} on {e(audit['data'])}</h1><p>{metrics}</p>"
            f"<table><tr><th>true</th><th>predicted</th><th>{unit}</th><th></th></tr>{table}</table>"
            + "".join(sections))


def write_units_page(path: Path, parquet: Path, audit_json: Path) -> Path:
    """``audit.html`` from ``audit.parquet`` and ``audit.json`` (written whole or not at all)."""
    import pyarrow.parquet as pq

    from ..scale.store import write_atomic

    rows = pq.read_table(parquet).to_pylist()
    audit = json.loads(audit_json.read_text(encoding="utf-8"))
    write_atomic(path, units_page(rows, audit).encode())
    return path


__all__ = ["units_page", "write_units_page"]
