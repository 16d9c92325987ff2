"""What a classifier returns, as logits: a tensor, a tuple whose first item is the logits, or an object
or dict with ``logits`` (Hugging Face's ``ImageClassifierOutput``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor


def logits_of(output: Any) -> Any:
    """The logits inside a model's output (returned unchanged when no rule applies: callers check)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    return output
