"""What a family's adapter tells the methods about its networks, so that no method names a family: which zennit
canonizers make its networks' LRP exact (``register_canonizers``) and how its attention layers record their
post-softmax probabilities for a call (``register_attention``). Each adapter module registers its own when
imported (importing `classcontrast.models` imports them all); the methods ask `canonizers_for` and
`capture_attention_layers`. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from ..hooks import OutputRecorder

# a family's canonizers for a model it built (a list, possibly empty), or None when the model is not one of its own
Canonizers = Callable[["nn.Module"], "list[Any] | None"]
# switch a model's attention layers of one family to record their probabilities into the recorder for the calling
# thread until the stack closes; the number of layers switched (0: none of this family)
AttentionCapture = Callable[["nn.Module", "OutputRecorder", ExitStack], int]

_CANONIZERS: dict[str, Canonizers] = {}
_ATTENTION: dict[str, AttentionCapture] = {}


def register_canonizers(family: str, canonizers: Canonizers) -> Canonizers:
    """Register the zennit canonizers a family's networks need (replacing the family's earlier ones)."""
    _CANONIZERS[family] = canonizers
    return canonizers


def register_attention(family: str, capture: AttentionCapture) -> AttentionCapture:
    """Register how a family's attention layers record their probabilities (replacing the family's earlier one)."""
    _ATTENTION[family] = capture
    return capture


def canonizers_for(model: nn.Module) -> list[Any] | None:
    """The canonizers the first family that knows ``model`` gives for it, or None when no family knows it."""
    for canonizers in _CANONIZERS.values():
        found = canonizers(model)
        if found is not None:
            return found
    return None


def capture_attention_layers(model: nn.Module, recorder: OutputRecorder, stack: ExitStack) -> int:
    """Switch every family's attention layers in ``model`` to record into ``recorder``; how many were switched."""
    return sum(capture(model, recorder, stack) for capture in _ATTENTION.values())


__all__ = ["AttentionCapture", "Canonizers", "canonizers_for", "capture_attention_layers", "register_attention",
           "register_canonizers"]
