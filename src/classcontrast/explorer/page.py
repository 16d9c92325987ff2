"""The explorer page: entries (an image, its classes and quantised maps per method) and the
self-contained HTML that shows them. No model here: see `classcontrast.explorer.offers`."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..text import SIGN_NOTE
from .encode import atlas, jpeg_data_url

NAMED = ("original", "mean", "max", "weighted", "probability")  # the named contrasts, in the page's order


PEERS = ("finer", "finer_mean", "rest")  # the peers' named contrasts: offered when asked for (see explore)


def contrast_keys(classes: Sequence[int], named: Sequence[str] = NAMED) -> list[str]:
    """The page's contrast keys for one image: the named contrasts, then ``foil:s`` for each class s."""
    return [*named, *(f"foil:{int(c)}" for c in classes)]


def entry(eid: str, image: str, title: str, classes: Sequence[int], probabilities: Sequence[float],
          maps: Mapping[str, np.ndarray], label: int | None = None, top: Sequence[tuple[int, float]] = (),
          default: tuple[int, str] | None = None, keys: Sequence[str] | None = None,
          notes: Mapping[str, np.ndarray] | None = None, labels: Sequence[int] | None = None) -> dict[str, Any]:
    """One explorable image: ``maps[method]`` is (L, M, h, w) for ``classes`` (L) under the M contrast
    ``keys`` (default `contrast_keys`; ``foil:s`` means "rather than class s"); ``notes[method]`` (L, M)
    flags the maps whose sum disagrees in sign with their score (the page says so under them); ``labels``:
    a multi-label image's labels present."""
    keys = list(keys) if keys is not None else contrast_keys(classes)
    methods = {}
    for name, m in maps.items():
        url, scales, tw, th = atlas(np.asarray(m))
        methods[name] = {"atlas": url, "tw": tw, "th": th, "scales": scales, "contrasts": keys}
        if notes is not None and name in notes:
            methods[name]["disagree"] = np.asarray(notes[name]).astype(int).tolist()
    target, contrast = default or (int(classes[0]), "weighted")
    return {"id": eid, "image": image, "title": title, "label": label,
            "targets": [int(c) for c in classes], "p": [round(float(p), 6) for p in probabilities],
            "top": [[int(c), round(float(p), 6)] for c, p in top], "methods": methods,
            "default": {"target": int(target), "contrast": contrast},
            **({} if labels is None else {"labels": [int(c) for c in labels]})}


def image_entry(pixels: Any, title: str) -> dict[str, str]:
    """An image for the page: its pixels in [0, 1] (3, H, W), as a JPEG data URL."""
    return {"src": jpeg_data_url(pixels), "title": title}


@cache
def _asset(name: str) -> str:
    return (resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


# In a <script> element the HTML parser, not JSON, decides where the element ends: "</script>" ends it,
# and "<!--<script>" makes it swallow the viewer's own script. Escaped as \\u003c etc. these characters
# are still the same JSON strings, and no name (file, class, id2label) can change the page's structure.
_JSON_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def json_for_html(data: Any) -> str:
    """``data`` as JSON that is safe inside an HTML ``<script>`` element (see ``_JSON_ESCAPES``)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).translate(_JSON_ESCAPES)


def _json_script(data: Mapping[str, Any], element_id: str) -> str:
    return f'<script type="application/json" id="{element_id}">{json_for_html(data)}</script>'


def _parts(data: Mapping[str, Any]) -> tuple[str, str]:
    """(markup with the data block, the viewer's script) for one viewer with its own element ids."""
    data = {**data, "sign_note": SIGN_NOTE + "."}
    uid = "cc" + secrets.token_hex(4)
    markup = (f'<style>{_asset("viewer.css")}</style><div class="cc-viewer" id="{uid}" tabindex="0"></div>'
              f"{_json_script(data, uid + '-data')}")
    return markup, f"{_asset('viewer.js')}\nClassContrastViewer.mount({json_for_html(uid)});"


def fragment(data: Mapping[str, Any]) -> str:
    """The viewer as an HTML fragment (for Jupyter): its own element ids, so several can share a page."""
    markup, script = _parts(data)
    return f"{markup}<script>{script}</script>"


def csp(script: str) -> str:
    """The page's Content-Security-Policy: no request of any kind, and only the viewer's own script runs
    (allowed by its SHA-256 hash; an injected script or event handler attribute does not)."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return (f"default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "connect-src 'none'; font-src 'none'; form-action 'none'; base-uri 'none'")


def figures(items: Sequence[Mapping[str, str]]) -> str:
    """Static figures below the viewer (``explain --concepts``' figures): each a caption and an image as a
    ``data:`` URI (the page requests nothing)."""
    return "".join(f'<figure style="margin:1.5em 0"><img src="{html.escape(f["src"])}" alt="{html.escape(f["title"])}" '
                   f'style="max-width:100%"><figcaption>{html.escape(f["title"])}</figcaption></figure>'
                   for f in items if str(f["src"]).startswith("data:image/"))


def page(data: Mapping[str, Any]) -> str:
    """A complete, self-contained HTML page: no network, no CDN, no server (the policy forbids requests); ``data``'s
    ``figures`` (`figures`) are drawn below the viewer."""
    title = html.escape(str(data.get("title", "classcontrast explorer")))
    static = figures(data.get("figures", ()))
    data = {k: v for k, v in data.items() if k != "figures"}
    markup, script = _parts(data)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp(script)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title}</title></head><body data-cc-page="1">{markup}{static}<script>{script}</script></body>'
            "</html>\n")


def write_page(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write `page` to ``path`` (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page(data), encoding="utf-8")
    tmp.replace(path)
    return path
