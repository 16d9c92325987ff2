"""Shared command-line helpers: argument rewriting, model loading, devices, errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch
from rich.console import Console

from ..errors import ClassContrastError

console = Console(stderr=False)


def expand_multi_options(argv: Sequence[str], multi: dict[str, Callable[[str], bool]]) -> list[str]:
    """Let ``--contrast original weighted`` mean ``--contrast original --contrast weighted``.

    After a multi-value option, following tokens are taken as more values while ``accepts(token)``
    says they are valid values (so image paths after the option stay positional).
    """
    out: list[str] = []
    current: str | None = None
    for tok in argv:
        if tok.startswith("-"):
            current = tok if tok in multi else None
            out.append(tok)
            continue
        if current is not None and out[-1] != current and multi[current](tok):
            out.extend([current, tok])
            continue
        if current is not None and out[-1] == current:
            out.append(tok)
            continue
        current = None
        out.append(tok)
    return out


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else must be a valid torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ClassContrastError(f"unknown device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ClassContrastError(f"device {device!r} requested but CUDA is not available")
    return dev


def run_cli(app: Any, argv: Sequence[str]) -> None:
    """Run a typer app; a ClassContrastError becomes a one-line message and exit code 2."""
    try:
        app(args=list(argv), prog_name="classcontrast", standalone_mode=True)
    except ClassContrastError as e:
        sys.stderr.write(f"error: {e}\n")  # one line, never wrapped
        sys.exit(2)
