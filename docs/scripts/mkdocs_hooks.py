"""MkDocs hooks: mathematics rendered at build time, and a check that nothing is left unrendered.

* Maths written ``$...$`` (inline) or ``$$...$$`` (display), in the pages and in the docstrings the API
  page shows, is marked by ``pymdownx.arithmatex`` and converted here to MathML with ``latex2mathml``:
  browsers draw MathML natively, so the site needs no script, no font download and no CDN (it works
  offline and from a local server alike).
* The build fails on text that was meant to be rendered and was not: a ``$`` or a LaTeX command outside
  code, or a Sphinx role such as ``:class:`` (docstrings must use mkdocstrings' ``[Name][path]``).
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


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    content = _BLOCK.sub(lambda m: f'<div class="math">{_mathml(m.group(1), "block")}</div>', content)
    content = _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), content)
    text = html.unescape(_TAGS.sub(" ", _CODE.sub(" ", re.sub(r"<math\b.*?</math>", " ", content, flags=re.S))))
    found = _LEFTOVER.search(text)
    if found:
        around = " ".join(text[max(0, found.start() - 60) : found.end() + 60].split())
        raise PluginError(f"{page.file.src_path}: unrendered text {found.group(0)!r} in: ... {around} ...")
    return content
