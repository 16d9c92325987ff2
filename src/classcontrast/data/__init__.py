"""Images and data sources."""

from .images import IMAGE_SUFFIXES, list_images, load_image, load_images, to_rgb
from .samples import SAMPLES, sample_image
from .sources import LABELS_FROM_FOLDERS, LABELS_FROM_PREDICTION, Sample, SampleSource
from .specs import open_source

__all__ = [
    "IMAGE_SUFFIXES",
    "LABELS_FROM_FOLDERS",
    "LABELS_FROM_PREDICTION",
    "SAMPLES",
    "Sample",
    "SampleSource",
    "list_images",
    "load_image",
    "load_images",
    "open_source",
    "sample_image",
    "to_rgb",
]
