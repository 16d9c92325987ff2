"""What ``classcontrast explain`` reads: the inputs of one batch, each as its model takes it — an image (as the model's
own tools read it), a clip or a NIfTI volume — within the readers' budgets; a file that cannot be read is one line
naming it, or left out with a warning under ``--skip-bad``. Torch is imported on use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ClassContrastError

BUNDLED = Path("chelsea (bundled cat photo)")  # no image given: the bundled photo
SKIP_HINT = " (--skip-bad leaves unreadable inputs out)"


def read_batch(paths: list[Path], bundle: Any, skip_bad: bool, reading: dict[str, Any]
               ) -> tuple[list[Path], Any, list[Any], list[Any]]:
    """(the paths read, their model inputs (B, C, *S), each NIfTI volume's affine or None, each image's own
    (height, width) or None) for one batch: each input read and transformed at once (no full-size copy is kept) —
    an image (as the model's own tools read it: `ModelBundle.read_image`), a clip (``--frames`` or the model's
    clip length, spread over it) or a NIfTI volume, within the readers' budgets (`classcontrast.data.budgets`). An
    unreadable or refused file, or one the model does not take (a clip for an image model), is a one-line error
    naming it, or, with ``skip_bad``, a warning naming it and the file is left out."""
    import warnings

    import torch

    from ..errors import ClassContrastWarning

    kept, xs, affines, sizes = [], [], [], []
    for path in paths:
        try:
            data, affine = read_input(path, bundle, reading)
            xs.append(bundle.transform(data))
        except ClassContrastError as e:
            text = str(e) if str(path) in str(e) else f"{path}: {e}"
            if not skip_bad:
                raise ClassContrastError(f"{text}{SKIP_HINT if _unreadable(e) else ''}") from e
            warnings.warn(f"skipped {text}", ClassContrastWarning, stacklevel=2)
            continue
        kept.append(path)
        affines.append(affine)
        sizes.append((data.height, data.width) if hasattr(data, "height") else None)
    if len({x.shape for x in xs}) > 1:
        shapes = ", ".join(sorted({str(tuple(x.shape)) for x in xs}))
        raise ClassContrastError(f"inputs of different shapes in one batch ({shapes}): give one kind at a time, "
                                 "or --batch-size 1")
    return kept, torch.stack(xs) if xs else None, affines, sizes


def _unreadable(e: ClassContrastError) -> bool:
    """Whether the --skip-bad hint helps: a file that could not be read, not a budget, a backend or a model's
    kind (which every other input of the run would meet too)."""
    text = str(e)
    return not any(word in text for word in ("budget", "backend", "may have", "may hold", "--video-backend",
                                             "takes images", "takes clips", "takes volumes", "multiple of",
                                             "fewer than the"))


def read_input(path: Path, bundle: Any, reading: dict[str, Any]) -> tuple[Any, Any]:
    """(one input's data for ``bundle.transform``, its NIfTI affine or None), refusing a kind the model does not
    take before reading it."""
    from ..data import sample_image
    from ..data.budgets import CLIP_PIXELS, VOLUME_VOXELS
    from ..data.video import VIDEO_SUFFIXES, load_video
    from ..data.volume import is_volume, load_volume

    if path == BUNDLED:
        return sample_image("chelsea"), None
    takes = "clips" if bundle.frames is not None else "volumes" if bundle.normalize.spatial == 3 else "images"
    kind = "volumes" if is_volume(path) else "clips" if path.suffix.lower() in VIDEO_SUFFIXES else "images"
    if kind != takes:
        one = {"clips": "a video clip", "volumes": "a 3-D volume", "images": "an image"}[kind]
        raise ClassContrastError(f"{path} is {one}, but the model {bundle.name} takes {takes}: explain {kind} with a "
                                 f"model that takes {kind} (classcontrast models lists the model families)")
    if kind == "volumes":
        return load_volume(path, reading.get("max_voxels") or VOLUME_VOXELS)
    if kind == "clips":
        return load_video(path, frames=reading.get("frames") or bundle.frames, backend=reading.get("backend"),
                          repeat=bool(reading.get("repeat")), max_pixels=reading.get("max_pixels") or CLIP_PIXELS), None
    return bundle.read_image(path), None


__all__ = ["BUNDLED", "SKIP_HINT", "read_batch", "read_input"]
