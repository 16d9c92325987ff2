"""What ``explain`` takes: image files, video clips and NIfTI volumes, given as files or found in folders."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .images import IMAGE_SUFFIXES, expand
from .video import VIDEO_SUFFIXES
from .volume import is_volume


def is_input(path: Path) -> bool:
    """Whether a file in a folder is something ``explain`` reads: an image, a clip or a NIfTI volume."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES or is_volume(path)


def list_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and folders expanded (recursively, sorted) into the images, clips and volumes they hold;
    a folder with none is an error."""
    return expand(paths, is_input, "no images found in folder {} (nor video clips or NIfTI volumes)")


__all__ = ["is_input", "list_inputs"]
