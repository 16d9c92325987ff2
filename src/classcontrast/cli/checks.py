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


def split_name(name: str) -> tuple[str, str]:
    """(stem, suffix) of a file name, ``.nii.gz`` counted as one suffix: ``scan.v1.nii.gz`` -> (``scan.v1``,
    ``.nii.gz``), ``why.png`` -> (``why``, ``.png``), ``clip`` -> (``clip``, ``""``)."""
    if name.lower().endswith(".nii.gz"):
        return name[: -len(".nii.gz")], name[-len(".nii.gz") :]
    path = Path(name)
    return path.stem, path.suffix


def output_path(out: Path, index: int | None = None, name: str | None = None, count: int = 1,
                *parts: str) -> Path:
    """The one function that names a run's output files (figures, NIfTI maps, overlay videos).

    ``out`` itself for a run's one output; beside it, ``<out stem>[_<parts>...][_<index>_<input stem>]<suffix>``
    when the run writes several: ``parts`` (a method and a contrast) tell a file's map, and for one file per input
    (``count`` inputs) the input's index — which makes names unique per input (two inputs named ``scan.nii.gz`` in
    two folders) — and its whole stem (``scan.v1.nii.gz`` -> ``scan.v1``, not cut at the first dot). Parts are
    made file-name safe (``foil:Egyptian cat`` -> ``foil_Egyptian_cat``)."""
    import re

    stem, suffix = split_name(out.name)
    pieces = [stem, *(re.sub(r"[^\w.-]+", "_", part) for part in parts)]
    if index is not None and count > 1:
        pieces += [f"{index:03d}", split_name(Path(name or "").name)[0]]
    return out if len(pieces) == 1 else out.with_name("_".join(p for p in pieces if p) + suffix)


def check_outputs(paths: Iterable[Path], option: str, inputs: Iterable[os.PathLike[str] | str],
                  given: Iterable[os.PathLike[str] | str]) -> None:
    """Before any work, for every file a run will write (`output_path`): none is an input of the run, no two are
    the same file, and none in a format the run's readers take (an image, a clip, a volume) lands inside a folder
    given as input (the next run would read it as an input, and overwrite it while reading it)."""
    from ..data.images import IMAGE_SUFFIXES, excluded
    from ..data.video import VIDEO_SUFFIXES

    files = [Path(p) for p in inputs]
    seen: dict[str, Path] = {}
    for candidate in paths:
        key = os.path.abspath(candidate)
        if key in seen:
            raise ClassContrastError(f"{option}: two outputs would both be written to {shown(candidate)}; choose "
                                     "other names")
        seen[key] = candidate
        for f in files:
            try:
                same = os.path.samefile(candidate, f)
            except OSError:
                same = key == os.path.abspath(f)
            if same:
                raise ClassContrastError(f"{option} {shown(candidate)} would overwrite the input image {shown(f)}; "
                                         "choose another output name or folder")
        suffix = split_name(candidate.name)[1]
        readable = suffix.lower() in IMAGE_SUFFIXES or suffix.lower() in VIDEO_SUFFIXES or \
            suffix.lower() in (".nii", ".nii.gz")
        if readable:
            for folder in (Path(g) for g in given):
                parent = candidate.parent if candidate.parent != Path("") else Path(".")
                if folder.is_dir() and excluded(parent, [folder]):
                    raise ClassContrastError(f"{option} {shown(candidate)} lies inside the input folder "
                                             f"{shown(folder)}: the next run would read it as an input; write it "
                                             "outside (or a figure as .pdf / .svg)")
