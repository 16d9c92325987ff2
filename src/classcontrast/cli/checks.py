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


def figure_name(out: Path, i: int, image: str) -> Path:
    """The figure of image ``i`` (named ``image``) when a run writes one figure per image:
    ``why_000_<image stem>.png`` beside ``--out why.png``."""
    return out.with_name(f"{out.stem}_{i:03d}_{Path(image).stem}{out.suffix}")


def check_figures(out: Path, option: str, inputs: Iterable[os.PathLike[str] | str],
                  given: Iterable[os.PathLike[str] | str], names: list[str]) -> None:
    """No figure a run may write (``out``, or one per image: `figure_name`) replaces an input image, and none
    lands inside a folder given as input when it is in a format the image reader takes (the next run would
    read the figures as images). Checked before any work."""
    from ..data.images import IMAGE_SUFFIXES, excluded

    files = [Path(p) for p in inputs]
    for candidate in [out, *(figure_name(out, i, n) for i, n in enumerate(names))]:
        for f in files:
            try:
                same = os.path.samefile(candidate, f)
            except OSError:
                same = os.path.abspath(candidate) == os.path.abspath(f)
            if same:
                raise ClassContrastError(f"{option} {shown(out)}: the figure {shown(candidate)} would overwrite the "
                                         f"input image {shown(f)}; choose another output name or folder")
    if out.suffix.lower() in IMAGE_SUFFIXES:
        for folder in (Path(g) for g in given):
            if folder.is_dir() and excluded(out.parent if out.parent != Path("") else Path("."), [folder]):
                raise ClassContrastError(f"{option} {shown(out)} lies inside the input folder {shown(folder)}: its "
                                         "figures would be read as images by the next run; write them outside it "
                                         "(or as .pdf / .svg)")
