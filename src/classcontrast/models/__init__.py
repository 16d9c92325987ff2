"""The model zoo."""

from .bundle import ModelBundle, Normalize
from .zoo import EMBEDDED, imagenet_categories, load_model, load_state

__all__ = ["EMBEDDED", "ModelBundle", "Normalize", "imagenet_categories", "load_model", "load_state"]
