"""classcontrast: why did the classifier pick class A, and not the other classes?

Class-contrastive back-propagation explanations (Wang & Wang, NeurIPS 2022) on two orthogonal
axes, Method × Contrast, for any PyTorch image classifier.
"""

from __future__ import annotations

from . import targets
from .adapters import ContrastModel, quantus_explain
from .contrasts import (
    CONTRASTS,
    Contrast,
    Foil,
    Max,
    Mean,
    Original,
    Probability,
    Weighted,
    get_contrast,
)
from .errors import ClassContrastError
from .explain import explain
from .explanation import Explanation, Explanations
from .methods import METHODS, Method, get_method, register_method
from .targets import TopK, resolve_targets

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The model zoo, images and figures import heavier packages (timm, PIL, matplotlib): load on use.
    if name in {"load_model", "ModelBundle"}:
        from . import models

        return getattr(models, name)
    if name in {"load_image", "load_images", "sample_image"}:
        from . import data

        return getattr(data, name)
    if name in {"plot_explanations", "overlay"}:
        from . import viz

        return getattr(viz, name)
    raise AttributeError(f"module 'classcontrast' has no attribute {name!r}")


__all__ = [
    "CONTRASTS",
    "METHODS",
    "ClassContrastError",
    "Contrast",
    "ContrastModel",
    "Explanation",
    "Explanations",
    "Foil",
    "Max",
    "Mean",
    "Method",
    "Original",
    "Probability",
    "TopK",
    "Weighted",
    "explain",
    "get_contrast",
    "get_method",
    "quantus_explain",
    "register_method",
    "resolve_targets",
    "targets",
]
