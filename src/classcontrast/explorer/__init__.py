"""The interactive explorer: one self-contained HTML page (no network, no server) showing, for every
image, its top classes with every contrast and every "t rather than s" foil, the method, the opacity
and the colour scale under the reader's control.

* `classcontrast.explorer.offers`: what a page offers, explained (a probe, then one
  [`explain`][classcontrast.engine.explain] call per method);
* `classcontrast.explorer.render`: the page's data from those results (no model involved);
* `classcontrast.explorer.encode`: images and quantised maps as data URLs;
* `classcontrast.explorer.page`: entries and the HTML page;
* `classcontrast.explorer.compute`: both steps (`explorer_data`, `write_explorer`);
* `classcontrast.explorer.notebook`: the viewer of an explanation in Jupyter (the renderer on one call's result).

Names load on first use, so the Jupyter viewer does not pull in the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"contrast_keys": "page", "entry": "page", "image_entry": "page", "fragment": "page", "page": "page",
            "write_page": "page", "NAMED": "page", "display_pixels": "encode", "explore": "offers",
            "explorer_data": "compute", "write_explorer": "compute", "page_data": "render"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = sorted(_EXPORTS)
