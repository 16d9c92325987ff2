"""Images and data sources."""

from .images import IMAGE_SUFFIXES, list_images, load_image, load_images, to_rgb
from .samples import SAMPLES, sample_image

__all__ = ["IMAGE_SUFFIXES", "SAMPLES", "list_images", "load_image", "load_images", "sample_image", "to_rgb"]
