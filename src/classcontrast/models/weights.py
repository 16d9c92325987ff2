"""Weights from a file: a state dict (or a checkpoint holding one) loaded into an architecture."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ClassContrastError


def load_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a file (a plain state dict or a checkpoint with 'state_dict' / 'model')."""
    p = Path(path)
    if not p.is_file():
        raise ClassContrastError(f"weights file not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ClassContrastError(f"{p} is not a PyTorch checkpoint ({type(e).__name__})") from e
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ClassContrastError(f"{p} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)
        raise ClassContrastError(f"{source} does not fit the architecture: {first.strip()}") from e


__all__ = ["load_into", "load_state"]
