"""``atlas.html``: the concept atlas drawn from ``atlas.json`` and its crops alone — the pair, then each concept with
its mean relevances and its reference crops beside their heatmaps. Runs no model, imports no torch."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..scale.store import write_atomic
from ..text import count

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.3em}h2{font-size:1.05em;
margin:1.4em 0 .3em}.refs{display:flex;flex-wrap:wrap;gap:.8em}.ref{font-size:.75em;text-align:center}
.ref img{width:112px;height:112px;image-rendering:pixelated;display:block}.pair{display:flex;gap:2px}
.note{color:#555;font-size:.85em}"""


def write_atlas_page(atlas: Path, out: Path | None = None) -> Path:
    """Render ``atlas`` (an ``atlas.json``) as ``atlas.html`` beside it (or ``out``); returns the page's path."""
    data = json.loads(atlas.read_text())
    path = out or atlas.with_suffix(".html")
    write_atomic(path, page(data).encode())
    return path


def page(data: dict[str, Any]) -> str:
    """The page's HTML."""
    e = html.escape
    question = (f"{data['target_name']} rather than {data['foil_name']}" if data["foil"] is not None else
                f"{data['target_name']} ({data['contrast']})")
    title = f"Why {e(question)}: the concepts of {e(data['layer'])}"
    over = "the images labelled " + e(str(data["target_name"])) if data["chosen_over"] == "target" else "all images"
    pair = f"{data['target_name']} or {data['foil_name']}" if data["foil"] is not None else str(data["target_name"])
    parts = [f"<!doctype html><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style><h1>{title}</h1>",
             f"<p class='note'>{e(data['method'])} relevance under the contrast, over "
             f"{count(data['images'], 'image')}; the {count(len(data['concepts']), 'concept')} of highest mean "
             f"relevance over {over} (of {data['channels']} channels), each with the images where it is most "
             f"relevant to the question — its relevance times the probability that the image is {e(pair)} — as a "
             "crop and its conditional heatmap (red for the target, blue against), labelled with the image's class "
             f"(or prediction), the concept's relevance and that probability.</p>"]
    parts += [_concept(c, data) for c in data["concepts"]]
    return "\n".join(parts)


def _concept(c: dict[str, Any], data: dict[str, Any]) -> str:
    e = html.escape
    stats = c["mean_relevance"]
    means = [f"images of {e(str(data['target_name']))} {stats['target']:+.3g}" if data["chosen_over"] == "target"
             else "", f"images of {e(str(data['foil_name']))} {stats['foil']:+.3g}" if "foil" in stats else "",
             f"all {stats['all']:+.3g}"]
    labels = Counter(str(r["label_name"]) for r in c["references"] if r["label_name"] is not None)
    mostly = ", ".join(f"{n} {e(name)}" for name, n in labels.most_common(3))
    refs = "".join(
        f"<div class='ref'><div class='pair'><img src='{e(r['crop'])}' alt='crop'><img src='{e(r['heatmap'])}' "
        f"alt='heatmap'></div>{e(str(r['label_name'] or r['id']))} · {r['relevance']:+.3g} · p {r['stake']:.2f}</div>"
        for r in c["references"])
    return (f"<h2>channel {c['channel']}</h2><p class='note'>mean relevance: {' · '.join(m for m in means if m)}"
            f"{'; references: ' + mostly if mostly else ''}</p><div class='refs'>{refs}</div>")


__all__ = ["page", "write_atlas_page"]
