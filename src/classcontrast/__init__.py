"""classcontrast: why did the model pick class A, and not the other classes (or not B)?

Class-contrastive back-propagation explanations (Wang & Wang, NeurIPS 2022) on three orthogonal axes,
Method × Contrast × Unit (an image's class, a region, an object, a candidate answer), for PyTorch vision models.

Names are loaded on first use (``import classcontrast`` itself imports neither torch nor anything
heavy), so the command line starts at once and each command imports only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module defining it (relative to this package)
_EXPORTS: dict[str, str] = {
    "CONTRASTS": "contrasts", "Contrast": "contrasts", "Foil": "contrasts", "Max": "contrasts",
    "Mean": "contrasts", "Original": "contrasts", "Probability": "contrasts", "Weighted": "contrasts",
    "get_contrast": "contrasts",
    "Finer": "peer_contrasts", "FinerMean": "peer_contrasts", "ContrastCAM": "peer_contrasts", "ReST": "peer_contrasts",
    "ClassContrastError": "errors", "ClassContrastWarning": "errors",
    "explain": "engine",
    "Explanation": "explanation", "Explanations": "explanation",
    "METHODS": "methods", "Method": "methods", "get_method": "methods", "register_method": "methods",
    "TopK": "targets", "Threshold": "targets", "resolve_targets": "targets", "Region": "units",
    "Detections": "units.selectors", "InstanceMasks": "units",
    "ContrastModel": "adapters", "quantus_explain": "adapters",
    "ModelBundle": "models", "load_model": "models", "zero_shot": "models.zero_shot", "answers": "models.answers",
    "prompt_tokens": "models.prompt",
    "SlidingWindow": "models.windows",
    "load_image": "data", "load_images": "data", "sample_image": "data", "load_video": "data.video",
    "save_video": "data.video", "load_volume": "data.volume", "save_volume": "data.volume",
    "plot_explanations": "viz", "plot_concepts": "viz", "overlay": "viz", "overlay_rgb": "viz",
    "class_sensitivity": "evaluation.sensitivity", "ClassSensitivity": "evaluation.sensitivity",
    "audit": "confusion", "Audit": "confusion", "concepts": "crp", "Concepts": "crp",
    "explorer_data": "explorer.compute", "write_explorer": "explorer.compute",
}
_SUBMODULES = {"targets", "contrasts", "methods", "evaluation", "models", "data", "viz", "adapters", "engine",
               "explorer"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'classcontrast' has no attribute {name!r}")
    globals()[name] = value
    return value


def _show_in_jupyter() -> None:
    """In IPython (Jupyter), results display as the explorer (`classcontrast.explorer.notebook`): registered with
    the display formatter by the results' module and class names, so nothing is imported until one is shown."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    html = shell.display_formatter.formatters["text/html"]
    for name in ("Explanation", "Explanations"):
        html.for_type_by_name(f"{__name__}.explanation", name, _explorer_html)


def _explorer_html(results: Any) -> str | None:
    from .explorer.notebook import explanations_html

    return explanations_html(results)


_show_in_jupyter()


def __dir__() -> list[str]:
    """The API only: the public names, the submodules and the version (not this module's own machinery)."""
    return sorted({*__all__, *_SUBMODULES, "__version__"})


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import targets
    from .adapters import ContrastModel, quantus_explain
    from .confusion import Audit, audit
    from .contrasts import CONTRASTS, Contrast, Foil, Max, Mean, Original, Probability, Weighted, get_contrast
    from .crp import Concepts, concepts
    from .data import load_image, load_images, sample_image
    from .data.video import load_video, save_video
    from .data.volume import load_volume, save_volume
    from .engine import explain
    from .errors import ClassContrastError, ClassContrastWarning
    from .evaluation.sensitivity import ClassSensitivity, class_sensitivity
    from .explanation import Explanation, Explanations
    from .explorer.compute import explorer_data, write_explorer
    from .methods import METHODS, Method, get_method, register_method
    from .models import ModelBundle, load_model
    from .models.answers import answers
    from .models.prompt import prompt_tokens
    from .models.windows import SlidingWindow
    from .models.zero_shot import zero_shot
    from .peer_contrasts import ContrastCAM, Finer, FinerMean, ReST
    from .targets import Threshold, TopK, resolve_targets
    from .units import InstanceMasks, Region
    from .units.selectors import Detections
    from .viz import overlay, overlay_rgb, plot_concepts, plot_explanations

__all__ = [
    "CONTRASTS",
    "METHODS",
    "Audit",
    "ClassContrastError",
    "ClassContrastWarning",
    "ClassSensitivity",
    "Concepts",
    "Contrast",
    "ContrastCAM",
    "ContrastModel",
    "Detections",
    "Explanation",
    "Explanations",
    "Finer",
    "FinerMean",
    "Foil",
    "InstanceMasks",
    "Max",
    "Mean",
    "Method",
    "ModelBundle",
    "Original",
    "Probability",
    "ReST",
    "Region",
    "SlidingWindow",
    "Threshold",
    "TopK",
    "Weighted",
    "answers",
    "audit",
    "class_sensitivity",
    "concepts",
    "explain",
    "explorer_data",
    "get_contrast",
    "get_method",
    "load_image",
    "load_images",
    "load_model",
    "load_video",
    "load_volume",
    "overlay",
    "overlay_rgb",
    "plot_concepts",
    "plot_explanations",
    "prompt_tokens",
    "quantus_explain",
    "register_method",
    "resolve_targets",
    "sample_image",
    "save_video",
    "save_volume",
    "targets",
    "write_explorer",
    "zero_shot",
]
