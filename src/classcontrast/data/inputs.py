"""What ``explain`` takes: image files, video clips and NIfTI volumes, given as files or found in folders."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ClassContrastError
from .images import IMAGE_SUFFIXES
from .video import VIDEO_SUFFIXES
from .volume import is_volume


def is_input(path: Path) -> bool:
    """Whether a file in a folder is something ``explain`` reads: an image, a clip or a NIfTI volume."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES or is_volume(path)


def list_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and folders expanded (recursively, sorted) into the images, clips and volumes they hold;
    a folder with none is an error."""
    out: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_input(f))
            if not found:
                raise ClassContrastError(f"no images found in folder {p} (nor video clips or NIfTI volumes)")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise ClassContrastError(f"no such file or folder: {p}")
    return out


__all__ = ["is_input", "list_inputs"]
