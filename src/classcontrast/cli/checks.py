"""Output paths and numbers checked before any work.

Outputs never destroy inputs: an output file that is one of the input images, a folder given where a
file is written (or the reverse), an unwritable place, an over-long name or a figure format matplotlib
cannot write are each a one-line error before the model is even loaded. Imports nothing heavy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ClassContrastError
from ..text import shown

NAME_MAX = 255  # bytes in one path component on the common file systems
FIGURE_SUFFIXES = frozenset({".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".eps",
                             ".ps"})


def _check_names(path: Path, option: str) -> None:
    """No part of ``path`` longer than the file system takes (checked before anything looks at the path)."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise ClassContrastError(f"{option} {shown(path)[:60]}…: the name {shown(part[:40])}… is longer than "
                                     f"{NAME_MAX} bytes")


def _writable_place(path: Path, option: str) -> None:
    """The first existing folder above ``path`` must be a writable folder (where ``path`` will be made)."""
    above = path.parent
    while not above.exists():
        if above == above.parent:
            break
        above = above.parent
    if above.exists() and not above.is_dir():
        raise ClassContrastError(f"{option} {shown(path)}: {shown(above)} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ClassContrastError(f"{option} {shown(path)}: cannot write in {shown(above)} (permission denied)")


def check_out_file(path: Path | None, option: str, inputs: Iterable[os.PathLike[str] | str] = (),
                   suffixes: Iterable[str] | None = None) -> None:
    """An output file: not a folder, not one of ``inputs``, a known ``suffixes`` ending, in a writable place."""
    if path is None:
        return
    _check_names(path, option)
    if path.is_dir():
        raise ClassContrastError(f"{option} {shown(path)} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise ClassContrastError(f"{option} {shown(path)}: the file is not writable")
    if suffixes is not None:
        allowed = sorted(suffixes)
        if path.suffix.lower() not in allowed:
            raise ClassContrastError(f"{option} {shown(path)}: unsupported file type {path.suffix or '(none)'!r}; "
                                     f"use one of {', '.join(allowed)}")
    _writable_place(path, option)
    if path.exists():
        for p in inputs:
            try:
                same = os.path.samefile(path, p)
            except OSError:
                same = False
            if same:
                raise ClassContrastError(f"{option} {shown(path)} is one of the input images; it would be "
                                         "overwritten. Choose another output name")


def check_out_dir(path: Path, option: str = "--out") -> None:
    """An output folder: not an existing file, in a writable place."""
    _check_names(path, option)
    if path.exists() and not path.is_dir():
        raise ClassContrastError(f"{option} {shown(path)} is a file; give a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise ClassContrastError(f"{option} {shown(path)}: cannot write in this folder (permission denied)")
    _writable_place(path, option)


def check_number(value: float | None, option: str, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None) -> None:
    """A finite number within bounds (``minimum`` inclusive, ``above`` exclusive); None passes."""
    if value is None:
        return
    if not math.isfinite(value):
        raise ClassContrastError(f"{option} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ClassContrastError(f"{option} must be at least {minimum:g}, got {value:g}")
    if above is not None and value <= above:
        raise ClassContrastError(f"{option} must be greater than {above:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ClassContrastError(f"{option} must be at most {maximum:g}, got {value:g}")
