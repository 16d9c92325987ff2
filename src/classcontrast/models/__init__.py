"""The model zoo: `load_model`, a lookup among the model families their adapter modules register
(`classcontrast.models.registry`)."""

from . import embedded, hf, medical, timm_models, torchvision_models, yolo  # noqa: F401  (their registrations)
from .bundle import ModelBundle, Normalize
from .registry import FAMILIES, Family, FamilyOption, register_family
from .weights import load_state
from .zoo import EMBEDDED, PREPROCESS, imagenet_categories, load_model, set_preprocess

__all__ = ["EMBEDDED", "FAMILIES", "PREPROCESS", "Family", "FamilyOption", "ModelBundle", "Normalize",
           "imagenet_categories", "load_model", "load_state", "register_family", "set_preprocess"]
