"""The report: ``report.md`` and a self-contained ``report.html`` from the same blocks."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluation.runner import markdown_rows


@dataclass
class Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "table" | "image" | "code"
    content: Any  # by kind: a text, a file path, or a table's rows of cells (its header first)


def to_markdown(blocks: list[Block], root: Path) -> str:
    out = []
    for b in blocks:
        if b.kind in {"h1", "h2", "h3"}:
            out.append("#" * int(b.kind[1]) + " " + str(b.content))
        elif b.kind == "p":
            out.append(str(b.content))
        elif b.kind == "table":
            out.append(markdown_rows(b.content))
        elif b.kind == "image":
            p = Path(b.content)
            out.append(f"![{p.stem}]({p.relative_to(root)})")
        elif b.kind == "code":
            out.append("```\n" + str(b.content).rstrip() + "\n```")
    return "\n\n".join(out) + "\n"


def _bold(cell: str) -> str:
    esc = html.escape(cell)
    return f"<b>{esc[2:-2]}</b>" if cell.startswith("**") and cell.endswith("**") else esc


def to_html(blocks: list[Block], title: str) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='Content-Security-Policy' "
             "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
             f"<title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
             "img{max-width:100%;border:1px solid #eee;margin:.5em 0}pre{background:#f7f7f7;padding:1em;"
             "overflow:auto}</style></head><body>"]
    for b in blocks:
        if b.kind in {"h1", "h2", "h3"}:
            parts.append(f"<{b.kind}>{html.escape(str(b.content))}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(str(b.content))}</p>")
        elif b.kind == "table":
            head, *body = b.content
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{_bold(c)}</td>" for c in row) + "</tr>" for row in body]
            parts.append("</table>")
        elif b.kind == "image":
            data = base64.b64encode(Path(b.content).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(Path(b.content).stem)}' src='data:image/png;base64,{data}'>")
        elif b.kind == "code":
            parts.append(f"<pre>{html.escape(str(b.content))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(blocks: list[Block], out: Path, title: str) -> list[Path]:
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks, out))
    page.write_text(to_html(blocks, title))
    return [md, page]
