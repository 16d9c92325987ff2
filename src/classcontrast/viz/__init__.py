"""Figures: signed overlays and grids."""

from .grid import plot_explanations
from .overlay import halfrange, overlay, to_numpy_image

__all__ = ["halfrange", "overlay", "plot_explanations", "to_numpy_image"]
