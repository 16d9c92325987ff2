"""The documentation site as a reader sees it: every page served over HTTP, opened in headless Chromium
and screenshotted, failing on code blocks that run off the right edge, on maths left unrendered (``$``,
``\\frac`` or a Sphinx role in the text, a formula of zero size), on raw cross-references, and on gallery
figures narrower than 300 px.

The site is the one ``make docs`` builds into ``site/`` (``make test`` builds it first); when it is
missing or older than a documentation file, the test builds it.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"

CHECK = r"""(() => {
  const pre = [...document.querySelectorAll('pre > code')];
  const overflow = pre.filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.textContent.slice(0, 60));
  const page = document.documentElement.scrollWidth > window.innerWidth + 1;
  const clone = document.querySelector('article, .md-content') ? document.querySelector('.md-content').cloneNode(true)
                                                              : document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, math').forEach((e) => e.remove());
  const text = clone.textContent;
  const raw = (text.match(/\$|\\(frac|sum|partial|alpha|phi)\b|:(class|func|math|mod|meth):`?/g) || []);
  const maths = [...document.querySelectorAll('math')];
  const empty = maths.filter((m) => { const r = m.getBoundingClientRect(); return r.width === 0 || r.height === 0; });
  const figures = [...document.querySelectorAll('.gallery img')].map((i) => [i.complete, i.naturalWidth,
                                                                          i.getBoundingClientRect().width]);
  return {overflow, page, raw, maths: maths.length, empty: empty.length, figures};
})()"""


def _stale() -> bool:
    index = SITE / "index.html"
    if not index.exists():
        return True
    built = index.stat().st_mtime
    sources = [*(ROOT / "docs").rglob("*.md"), ROOT / "mkdocs.yml", *(ROOT / "docs" / "stylesheets").glob("*")]
    return any(p.stat().st_mtime > built for p in sources)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    if _stale():
        env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
        if not (ROOT / "docs" / "gallery").is_dir():
            subprocess.run([sys.executable, "docs/scripts/gallery.py"], cwd=ROOT, check=True, capture_output=True,
                           timeout=600)
        proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    handler = functools.partial(_Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _pages() -> list[str]:
    return sorted(str(p.relative_to(ROOT / "docs").with_suffix("")) for p in (ROOT / "docs").rglob("*.md")
                  if "scripts" not in p.parts)


def test_every_page_renders_without_overflow_or_raw_maths(site: str, tmp_path: Path) -> None:
    from tools.browser import Browser

    problems, with_maths = [], 0
    with Browser(width=1280, height=900) as b:
        for page in _pages():
            path = "" if page == "index" else (page.removesuffix("/index").removesuffix("index") + "/")
            b.open(f"{site}/{path}", ready="document.readyState === 'complete'")
            found = b.eval(CHECK)
            shot = b.screenshot()
            (tmp_path / f"{page.replace('/', '_')}.png").write_bytes(shot)
            assert len(shot) > 5_000, page  # a page drawn, not a blank
            if found["overflow"] or found["page"]:
                problems.append(f"{page}: code runs off the right edge: {found['overflow'] or 'the page'}")
            if found["raw"] or found["empty"]:
                problems.append(f"{page}: unrendered maths or roles {found['raw'][:5]}, "
                                f"{found['empty']} empty formulas")
            with_maths += found["maths"] > 0
            if page == "gallery":
                figures = found["figures"]
                assert len(figures) >= 17
                narrow = [f for f in figures if not f[0] or f[1] < 300 or f[2] < 300]
                if narrow:
                    problems.append(f"gallery: figures narrower than 300 px or not loaded: {narrow}")
    assert not problems, "\n".join(problems)
    assert with_maths >= 20  # the method and contrast pages, concepts, map signs, the API reference
