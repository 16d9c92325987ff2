"""Figures: signed overlays and grids."""

from .concepts import plot_concepts
from .grid import plot_explanations
from .overlay import halfrange, overlay, overlay_rgb, to_numpy_image

__all__ = ["halfrange", "overlay", "overlay_rgb", "plot_concepts", "plot_explanations", "to_numpy_image"]
