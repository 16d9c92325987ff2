"""The model zoo."""

from .bundle import ModelBundle, Normalize
from .zoo import EMBEDDED, PREPROCESS, imagenet_categories, load_model, load_state, set_preprocess

__all__ = ["EMBEDDED", "PREPROCESS", "ModelBundle", "Normalize", "imagenet_categories", "load_model", "load_state",
           "set_preprocess"]
