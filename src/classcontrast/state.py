"""Model state hygiene: a call leaves the model exactly as it found it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode with parameters not requiring grad, then restore both.

    Eval mode keeps BatchNorm statistics fixed and makes per-image gradients independent; frozen
    parameters mean autograd never builds or computes parameter gradients. Both are restored in
    ``finally``, so the model is as it was even when the call raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output for ``x`` in eval mode, without a graph; the model's state restored."""
    with frozen_eval(model), torch.no_grad():
        return model(x)
