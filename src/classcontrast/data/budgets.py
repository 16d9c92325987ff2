"""The readers' budgets, in one place: how much of a file may be read into memory, checked from the file's header
before anything is decoded, so that memory follows what is asked and never what a file's header claims (a 199 KB
MP4 of 8192² frames, a 521 KB NIfTI whose header says 1024 × 1024 × 512).

* images: Pillow's ``Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels), a decompression bomb refused as an error
  (`classcontrast.data.images.check_pixels`);
* clips: each frame within the images' budget, and the frames kept (``frames`` of them) within `CLIP_PIXELS`
  (`classcontrast.data.video.load_video`, ``max_pixels=``; ``--max-clip-pixels``);
* volumes: `VOLUME_VOXELS` voxels (`classcontrast.data.volume.load_volume`, ``max_voxels=``; ``--max-voxels``).

Each refusal is one line naming the file, the size its header gives and the option that raises the budget.
"""

from __future__ import annotations

import os

from ..errors import ClassContrastError

CLIP_PIXELS = 134_217_728  # 2^27: frames × height × width kept from one clip (1.6 GB as float32 RGB)
VOLUME_VOXELS = 134_217_728  # 2^27: a 512³ volume (512 MB per channel as float32)


def image_pixels() -> int:
    """Pillow's pixel budget for one image (its decompression-bomb limit; the same for one frame of a clip)."""
    from PIL import Image

    return int(Image.MAX_IMAGE_PIXELS or 2**62)


def _limit(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClassContrastError(f"{option} must be a whole number >= 1, got {value!r}")
    return value


def check_clip(path: os.PathLike[str] | str, kept: int, height: int, width: int, limit: int = CLIP_PIXELS) -> None:
    """A clip's ``kept`` frames of ``height`` × ``width`` (from its header) within the budgets, or one line."""
    limit = _limit(limit, "max_pixels")
    if height * width > image_pixels():
        raise ClassContrastError(f"{path}: its frames are {width}×{height} pixels, more than an image may have "
                                 f"({image_pixels():,}); scale the clip down first")
    if kept * height * width > limit:
        raise ClassContrastError(f"{path}: {kept} frames of {width}×{height} are {kept * height * width:,} pixels, "
                                 f"more than a clip may hold ({limit:,}); read fewer frames (frames=N) or raise the "
                                 "budget (max_pixels=, --max-clip-pixels)")


def check_volume(path: os.PathLike[str] | str, shape: tuple[int, ...], limit: int = VOLUME_VOXELS) -> None:
    """A volume of ``shape`` (from its header) within the voxel budget, or one line."""
    limit = _limit(limit, "max_voxels")
    voxels = 1
    for s in shape:
        voxels *= int(s)
    if voxels > limit:
        size = "×".join(str(int(s)) for s in shape)
        raise ClassContrastError(f"{path}: its header says {size} = {voxels:,} voxels, more than a volume may have "
                                 f"({limit:,}); crop or resample it, or raise the budget (max_voxels=, --max-voxels)")


__all__ = ["CLIP_PIXELS", "VOLUME_VOXELS", "check_clip", "check_volume", "image_pixels"]
