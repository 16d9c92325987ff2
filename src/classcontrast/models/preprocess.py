"""Resize, centre crop and convert a PIL image to a [0, 1] tensor, with Pillow only.

Pixel for pixel what torchvision's ``Resize(resize)`` / ``Resize((h, w))``, ``CenterCrop(size)`` and
``ToTensor()`` give for PIL images (tested), without importing torchvision (about a second of start-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import ClassContrastError

_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
            "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


# The most pixels a resized image may have (about 200 MB as a float tensor): a thin image (1 × 50 000
# pixels passes Pillow's decompression-bomb check) resized so that its shorter side is 256 would need
# gigabytes; it is refused in one line before any memory is taken.
MAX_RESIZED_PIXELS = 16_777_216


def resize(img: Image.Image, size: int | tuple[int, int], interpolation: str = "bilinear") -> Image.Image:
    """The shorter side to ``size`` (aspect kept, longer side truncated as torchvision does), or exactly
    (height, width) for a pair. An image whose resized size would exceed ``MAX_RESIZED_PIXELS`` (an
    extreme aspect ratio) is refused with a one-line error."""
    if interpolation not in _FILTERS:
        raise ClassContrastError(f"unknown interpolation {interpolation!r}; choose one of {', '.join(_FILTERS)}")
    w, h = img.size
    if isinstance(size, int):
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        new_h, new_w = size
    if new_w * new_h > MAX_RESIZED_PIXELS:
        raise ClassContrastError(
            f"an image of {w}×{h} pixels would be resized to {new_w}×{new_h} ({new_w * new_h:,} pixels, more than "
            f"{MAX_RESIZED_PIXELS:,}): its aspect ratio is too extreme; crop it first")
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), _FILTERS[interpolation])


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size``×``size`` crop (zero-padded first if the image is smaller)."""
    w, h = img.size
    if size > w or size > h:
        padded = Image.new(img.mode, (max(w, size), max(h, size)))
        padded.paste(img, ((size - w) // 2 if size > w else 0, (size - h) // 2 if size > h else 0))
        img, (w, h) = padded, padded.size
        if (w, h) == (size, size):
            return img
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """(C, H, W) float tensor in [0, 1] from an 8-bit PIL image (L, RGB, RGBA...)."""
    if img.mode not in {"L", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "LAB", "HSV"}:
        img = img.convert("RGB")
    arr = np.array(img, np.uint8, copy=True)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.transpose(2, 0, 1)).contiguous().to(torch.get_default_dtype()).div(255)


@dataclass(frozen=True)
class Preprocess:
    """PIL image -> [0, 1] tensor: resize (shorter side to ``resize``, or exactly ``(h, w)``; 0: keep the
    image's size), centre crop to ``crop`` (None: no crop), to tensor."""

    resize: int | tuple[int, int]
    crop: int | None = None
    interpolation: str = "bilinear"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if self.resize == 0:  # the model resizes itself (torchvision detectors): the image as it is
            return to_tensor(img.convert("RGB"))
        return to_tensor(self.view(img))

    def view(self, img: Image.Image, interpolation: str | None = None) -> Image.Image:
        """The resized and cropped PIL image, any mode (``interpolation`` "nearest" for a mask of class ids: the
        same geometry as the image's)."""
        if self.resize == 0:
            return img
        img = resize(img, self.resize, interpolation or self.interpolation)
        return center_crop(img, self.crop) if self.crop is not None else img


@dataclass(frozen=True)
class ClipPreprocess:
    """A clip (C, T, H, W) in [0, 1] -> each frame resized (shorter side to ``resize``, or exactly (h, w);
    bilinear, antialiased) and centre-cropped to ``crop``: torchvision's ``VideoClassification`` transform
    without its normalisation (the bundle's ``Normalize`` applies it)."""

    resize: int | tuple[int, int]
    crop: tuple[int, int]

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if not isinstance(clip, torch.Tensor) or clip.ndim != 4:
            raise ClassContrastError("a video classifier takes clips (C, T, H, W) in [0, 1]: cc.load_video(path, "
                                     "frames=bundle.frames)")
        frames = clip.transpose(0, 1).float()  # (T, C, H, W)
        h, w = frames.shape[-2:]
        if isinstance(self.resize, int):  # the shorter side, the longer truncated as torchvision does
            size = (self.resize, int(self.resize * w / h)) if h <= w else (int(self.resize * h / w), self.resize)
        else:
            size = self.resize
        frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", align_corners=False,
                                                 antialias=True)
        ch, cw = self.crop
        top, left = round((frames.shape[-2] - ch) / 2.0), round((frames.shape[-1] - cw) / 2.0)
        return frames[..., top : top + ch, left : left + cw].transpose(0, 1).contiguous()


@dataclass(frozen=True)
class Letterbox:
    """PIL image -> [0, 1] tensor as Ultralytics' predictor letterboxes it: scaled (aspect kept, bilinear on the
    8-bit image, as OpenCV's ``INTER_LINEAR``) so that it fits ``size`` × ``size`` (or ``(height, width)``: a
    checkpoint's ``imgsz``), then padded with grey (114) on both sides to the next multiple of ``stride`` (the
    predictor's ``auto`` letterbox), centred. `undo` takes a map (or mask) on the letterboxed input back onto the
    user's image; `undo_box` a box. A side scaled below one pixel keeps one (a 5000 × 2 image)."""

    size: int | tuple[int, int] = 640
    stride: int = 32
    crop: None = None  # images keep their own shapes (the command line explains them one at a time)

    @property
    def shape(self) -> tuple[int, int]:
        """The (height, width) an image is fitted into."""
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

    def geometry(self, height: int, width: int) -> tuple[int, int, int, int, int, int]:
        """(new height, new width, top, bottom, left, right padding) for an image of ``height`` × ``width``."""
        sh, sw = self.shape
        r = min(sh / height, sw / width)
        nh, nw = max(1, round(height * r)), max(1, round(width * r))
        dh, dw = ((sh - nh) % self.stride) / 2, ((sw - nw) % self.stride) / 2
        return nh, nw, round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        x = to_tensor(img.convert("RGB")) * 255
        h, w = x.shape[-2:]
        nh, nw, top, bottom, left, right = self.geometry(h, w)
        if (nh, nw) != (h, w):
            x = torch.nn.functional.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            x = x.round().clamp(0, 255)
        out = torch.full((3, top + nh + bottom, left + nw + right), 114.0, dtype=x.dtype)
        out[:, top : top + nh, left : left + nw] = x
        return out / 255

    def undo(self, maps: torch.Tensor, height: int, width: int, nearest: bool = False) -> torch.Tensor:
        """Maps (..., H, W) on the letterboxed input -> (..., ``height``, ``width``) on the user's image: the padding
        cropped off, the rest resized (bilinearly; ``nearest`` for masks)."""
        nh, nw, top, _, left, _ = self.geometry(height, width)
        inner = maps[..., top : top + nh, left : left + nw]
        lead = inner.shape[:-2]
        flat = inner.reshape(-1, 1, nh, nw)
        if nearest:
            out = torch.nn.functional.interpolate(flat.float(), size=(height, width), mode="nearest").to(maps.dtype)
        else:
            out = torch.nn.functional.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
        return out.reshape(*lead, height, width)

    def undo_box(self, box: list[float], height: int, width: int) -> list[float]:
        """A box (x0, y0, x1, y1) in the letterboxed input's pixels -> in the user's image's pixels."""
        nh, nw, top, _, left, _ = self.geometry(height, width)
        sy, sx = height / nh, width / nw
        x0, y0, x1, y1 = box
        return [min(max((x0 - left) * sx, 0.0), width), min(max((y0 - top) * sy, 0.0), height),
                min(max((x1 - left) * sx, 0.0), width), min(max((y1 - top) * sy, 0.0), height)]
