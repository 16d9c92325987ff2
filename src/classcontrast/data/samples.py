"""Natural sample photos shipped with scikit-image (offline)."""

from __future__ import annotations

from PIL import Image

from ..errors import ClassContrastError

SAMPLES = ("chelsea", "coffee", "rocket", "astronaut")


def sample_image(name: str = "chelsea") -> Image.Image:
    """A bundled photo: ``"chelsea"`` (a cat, the demo image), ``"coffee"``, ``"rocket"``, ``"astronaut"``."""
    if name not in SAMPLES:
        raise ClassContrastError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLES)}")
    try:
        from skimage import data
    except ImportError as e:
        raise ClassContrastError("the sample photos need scikit-image: pip install 'classcontrast[demo]'") from e
    return Image.fromarray(getattr(data, name)()).convert("RGB")
