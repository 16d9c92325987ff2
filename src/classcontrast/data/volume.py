"""Reading and writing 3-D volumes (NIfTI: ``.nii``, ``.nii.gz``) through nibabel (``pip install
"classcontrast[medical]"``), imported only here: a scan as a tensor, a map written back aligned with it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ClassContrastError
from .budgets import VOLUME_VOXELS, check_volume

VOLUME_SUFFIXES = (".nii", ".nii.gz")


def is_volume(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a NIfTI file (by its suffix)."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def _nib():
    try:
        import nibabel
    except ImportError as e:
        raise ClassContrastError("NIfTI volumes need nibabel: pip install 'classcontrast[medical]' (or pip install "
                                 "nibabel)") from e
    return nibabel


def load_volume(path: str | os.PathLike[str], max_voxels: int = VOLUME_VOXELS) -> tuple[Tensor, np.ndarray]:
    """(volume (C, *spatial) float32, affine (4, 4)): the array in the file's own voxel order with the values as
    stored (scaled by the file's slope and intercept, as nibabel reads them), C = 1 for a 3-D file and the
    4th dimension (channels, echoes, time points) first for a 4-D one; the file's voxel-to-world affine.

    The header's size is checked against ``max_voxels`` (`classcontrast.data.budgets`) before the data is read, and
    a volume holding NaN or infinite voxels is refused: each a one-line error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ClassContrastError(f"no such file: {p}")
    nib = _nib()
    try:
        image = nib.load(str(p))
        shape = tuple(int(s) for s in image.shape)
    except Exception as e:  # nibabel raises many types for a file that is not NIfTI
        raise ClassContrastError(f"{p} could not be read as a NIfTI volume ({type(e).__name__})") from e
    check_volume(p, shape, max_voxels)
    try:
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as e:  # a truncated file: whatever nibabel and gzip raise
        raise ClassContrastError(f"{p} could not be read as a NIfTI volume ({type(e).__name__})") from e
    bad = int(data.size - np.isfinite(data).sum())
    if bad:
        raise ClassContrastError(f"{p} holds {bad:,} NaN or infinite voxel{'s' if bad > 1 else ''}: fill them (e.g. "
                                 "np.nan_to_num) before explaining it")
    if data.ndim == 3:
        data = data[None]
    elif data.ndim == 4:
        data = np.moveaxis(data, -1, 0)
    else:
        raise ClassContrastError(f"{p} holds a {data.ndim}-D array; a volume is 3-D (or 4-D with channels last)")
    return torch.from_numpy(np.ascontiguousarray(data)), np.asarray(image.affine, dtype=np.float64)


def save_volume(path: str | os.PathLike[str], array: Tensor | np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write a map — a tensor or array of shape (*spatial), or (K, *spatial) for K maps (stored on the file's 4th
    dimension, as `load_volume` reads them back) — as NIfTI (float32) with the scan's ``affine``, so that it
    opens aligned with the scan in any viewer (identity when None)."""
    nib = _nib()
    arr = array.detach().float().cpu().numpy() if isinstance(array, Tensor) else np.asarray(array, np.float32)
    if arr.ndim == 4:
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    elif arr.ndim != 3:
        raise ClassContrastError(f"save_volume takes a (D, H, W) map or (K, D, H, W) maps, got shape {arr.shape}")
    a = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise ClassContrastError(f"the affine must be 4×4, got shape {a.shape}")
    p = Path(path)
    if not is_volume(p):
        raise ClassContrastError(f"{p}: a NIfTI file name ends with .nii or .nii.gz")
    p.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), a), str(p))
    return p


__all__ = ["VOLUME_SUFFIXES", "is_volume", "load_volume", "save_volume"]
