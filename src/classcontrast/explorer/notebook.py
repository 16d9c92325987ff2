"""The explorer for the result of one [`explain`][classcontrast.engine.explain] call, inline in Jupyter: the page's
renderer (`classcontrast.explorer.render`) on that result, each input an entry offering its targets under the call's
contrasts. `classcontrast` registers it with IPython's display formatter, so a result shows as the explorer in a
notebook; the results themselves know nothing of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .page import fragment
from .render import explanations_groups, page_data

if TYPE_CHECKING:
    from ..explanation import Explanation


def explanations_data(results: Mapping[str, Explanation]) -> dict[str, Any] | None:
    """Viewer data for the contrasts of one call (same images, targets and method); None without inputs."""
    first = next(iter(results.values()))
    if first.inputs is None:
        return None
    independent = "sigmoid head: independent probabilities (they need not sum to 1)" if first.head == "sigmoid" else ""
    return page_data(explanations_groups(results), f"{first.method}: {', '.join(results)}", independent)


def explanations_html(results: Any) -> str | None:
    """The viewer of an `Explanation` or of `Explanations` (or a mapping of contrast keys to Explanations) as an HTML
    fragment, or None when the explanation does not hold its inputs (IPython then shows the plain repr)."""
    from ..explanation import Explanation

    data = explanations_data({results.contrast: results} if isinstance(results, Explanation) else results)
    return None if data is None else fragment(data)


__all__ = ["explanations_data", "explanations_html"]
