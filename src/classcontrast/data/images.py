"""Reading images: any format Pillow reads, as RGB, EXIF orientation honoured, clear errors."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ClassContrastError

T = TypeVar("T")

IMAGE_SUFFIXES = frozenset(
    ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
)


_ROWS = 512  # rows converted at a time: no full-size copy of a large 16-bit or float image


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image as 8-bit grayscale: 16-bit values scaled by 255/65535 (integer
    arithmetic, floored), others by 255 / their maximum; converted a band of rows at a time, so that the
    only full-size arrays are the decoded image and the 8-bit result (an 8800² 16-bit PNG needs no 600 MB
    float copy)."""
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    sixteen = img.mode.startswith("I;16")
    hi = 65535.0
    if not sixteen:  # the maximum, band by band
        hi = max([1.0, *(float(np.asarray(img.crop((0, r, w, min(h, r + _ROWS)))).max()) for r in range(0, h, _ROWS))])
    for r in range(0, h, _ROWS):
        band = np.asarray(img.crop((0, r, w, min(h, r + _ROWS))))
        if sixteen:
            out[r : r + _ROWS] = (band.astype(np.uint32) * 255 // 65535).astype(np.uint8)
        else:
            out[r : r + _ROWS] = np.clip(band.astype(np.float32) / np.float32(hi) * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, palette, 16-bit, CMYK and alpha images as 8-bit RGB (alpha composited on white)."""
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        img = _to_8bit(img)
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _read(path: str | os.PathLike[str], read: Callable[[Image.Image], T]) -> T:
    """``read`` of the opened image file ``path``: a missing file, a folder, a file Pillow cannot identify, one
    beyond Pillow's pixel budget (``Image.MAX_IMAGE_PIXELS``, a decompression bomb) or a broken one is a one-line
    error naming it."""
    p = Path(path)
    if not p.exists():
        raise ClassContrastError(f"no such file: {p}")
    if p.is_dir():
        raise ClassContrastError(f"{p} is a folder; use load_images for folders")
    return _guarded(p, str(p), read)


def _guarded(source: Path | io.BytesIO, name: str, read: Callable[[Image.Image], T]) -> T:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                return read(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ClassContrastError(f"{name} is too large to read safely ({e})") from e
    except UnidentifiedImageError as e:
        raise ClassContrastError(f"{name} is not an image Pillow can read") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ClassContrastError(f"{name} could not be read as an image ({e})") from e


def load_image_bytes(data: bytes, name: str) -> Image.Image:
    """An image from its encoded bytes (a file a dataset stores), read as `load_image` reads a file (the same pixel
    budget, orientation and RGB); a bad one is a one-line error naming ``name``."""
    img = _guarded(io.BytesIO(data), name, _decoded)
    if min(img.size) < 1:
        raise ClassContrastError(f"{name} has no pixels")
    return img


def check_pixels(path: str | os.PathLike[str]) -> tuple[int, int]:
    """An image file's (width, height) from its header, before any decoding (errors as `load_image`'s): the
    budget of every image reader (`classcontrast.data.budgets`)."""
    return _read(path, lambda im: im.size)


def _decoded(im: Image.Image) -> Image.Image:
    im = ImageOps.exif_transpose(im)
    im.load()
    return to_rgb(im)


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open one image file as an RGB PIL image; a clear one-line error names a bad file. Alpha is composited on
    white (a transparent PNG's see-through pixels read as white, as a viewer shows them); a model family that reads
    files with its own tools reads them its way (`ModelBundle.read_image`: YOLO as Ultralytics does)."""
    img = _read(path, _decoded)
    if min(img.size) < 1:
        raise ClassContrastError(f"{Path(path)} has no pixels")
    return img


def excluded(path: Path, exclude: Iterable[os.PathLike[str] | str]) -> bool:
    """Whether ``path`` is one of the ``exclude`` paths or lies inside one (e.g. the run's own output
    folder inside its data folder: a re-run must not read its outputs as images or classes)."""
    here = Path(os.path.realpath(path))
    for e in exclude:
        other = Path(os.path.realpath(e))
        if here == other or other in here.parents:
            return True
    return False


def expand(paths: Iterable[str | os.PathLike[str]], keep: Callable[[Path], bool], empty: str | None) -> list[Path]:
    """Files as given, and folders expanded (recursively, sorted) into the files ``keep`` takes; a folder with none
    is the one-line error ``empty`` (its ``{}`` the folder), or allowed when ``empty`` is None."""
    out: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and keep(f))
            if not found and empty is not None:
                raise ClassContrastError(empty.format(p))
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise ClassContrastError(f"no such file or folder: {p}")
    return out


def list_images(paths: Iterable[str | os.PathLike[str]], allow_empty: bool = False,
                exclude: Iterable[os.PathLike[str] | str] = ()) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image files; folders skip non-images and
    anything inside ``exclude``. A folder without images is an error unless ``allow_empty`` (e.g. a
    class with no validation images)."""
    exclude = list(exclude)
    return expand(paths, lambda f: f.suffix.lower() in IMAGE_SUFFIXES and not (exclude and excluded(f, exclude)),
                  None if allow_empty else "no images found in folder {}")


def load_images(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Image.Image]]:
    """Load every image in the given files and folders as (path, RGB image)."""
    return [(p, load_image(p)) for p in list_images(paths)]
