"""MkDocs hooks: mathematics rendered at build time, and a check that nothing is left unrendered.

* Maths written ``$...$`` (inline) or ``$$...$$`` (display), in the pages and in the docstrings the API
  page shows, is marked by ``pymdownx.arithmatex`` and converted here to MathML with ``latex2mathml``:
  browsers draw MathML natively, so the site needs no script, no font download and no CDN (it works
  offline and from a local server alike).
* The build fails on text that was meant to be rendered and was not: a ``$`` or a LaTeX command outside
  code, or a Sphinx role such as ``:class:`` (docstrings must use mkdocstrings' ``[Name][path]``).
* The build fails on control characters (a tab or a backspace outside fenced code, in a page or in a
  docstring the API page shows): ``"\text"`` or ``"\big"`` written in a Python string that is not raw become
  a tab and a backspace, and the formula renders as ``O_{ext...}``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert
from mkdocs.exceptions import PluginError

_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)
_CODE = re.compile(r"<(pre|code|script|style)\b.*?</\1>", re.S | re.I)
_TAGS = re.compile(r"<[^>]+>")
_LEFTOVER = re.compile(r"(?<![\w`])(:(class|func|math|mod|meth|attr|data|obj|py:\w+):`?)"
                       r"|\\(frac|sum|partial|alpha|phi)\b|\$")


def _mathml(tex: str, display: str) -> str:
    try:
        return convert(html.unescape(tex).strip(), display=display)
    except Exception as e:  # the converter raises many types; the build must name the formula
        raise PluginError(f"cannot render the formula {tex!r}: {e}") from e


_CONTROL = re.compile(r"[\x00-\x08\x09\x0b\x0c\x0e-\x1f\x7f]")
_FENCED = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _no_control(text: str, where: str) -> None:
    found = _CONTROL.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        around = text[max(0, found.start() - 30) : found.end() + 30]
        raise PluginError(f"{where}: the control character {found.group(0)!r} on line {line} (a '\\t' or '\\b' "
                          f"in a string that is not raw?): {around!r}")


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    _no_control(_FENCED.sub(lambda m: "\n" * m.group(0).count("\n"), markdown), page.file.src_path)
    return markdown


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    content = _BLOCK.sub(lambda m: f'<div class="math">{_mathml(m.group(1), "block")}</div>', content)
    content = _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), content)
    text = html.unescape(_TAGS.sub(" ", _CODE.sub(" ", re.sub(r"<math\b.*?</math>", " ", content, flags=re.S))))
    _no_control(text, f"{page.file.src_path} (as rendered, docstrings included)")
    found = _LEFTOVER.search(text)
    if found:
        around = " ".join(text[max(0, found.start() - 60) : found.end() + 60].split())
        raise PluginError(f"{page.file.src_path}: unrendered text {found.group(0)!r} in: ... {around} ...")
    return content
