r"""What a classifier returns, as logits: a tensor, a tuple whose first item is the logits, or an object
or dict with ``logits`` (Hugging Face's ``ImageClassifierOutput``).

A model with **one output** (a binary classifier, or a binary segmenter's one channel) is read as the usual
sigmoid decision: its output $y$ is the logit of class 1 against class 0, so its logits are $[0, y]$ —
whose softmax is $[1 - \sigma(y), \sigma(y)]$ — and every contrast is defined: ``original`` of class 1 is
$y$ (of class 0 the constant 0: a zero map), ``weighted``, ``max``, ``mean`` and ``Foil`` are $\pm y$,
``probability`` is $\sigma(\pm y)$.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .errors import ClassContrastError


def logits_of(output: Any) -> Any:
    """The logits inside a model's output (returned unchanged when no rule applies: callers check); one
    output column becomes the binary logits $[0, y]$ (see the module docstring)."""
    y = _logits(output)
    if isinstance(y, Tensor) and (y.ndim == 2 or y.ndim >= 4) and y.shape[1] == 1 and y.is_floating_point():
        return torch.cat([torch.zeros_like(y), y], 1)
    return y


def is_binary(logits: Tensor) -> bool:
    """Whether (B, C, ...) logits are a one-output model's $[0, y]$ (column 0 is exactly 0)."""
    return logits.shape[1] == 2 and not bool(logits[:, 0].detach().any())


def _logits(output: Any) -> Any:
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


def all_finite(t: Tensor) -> Tensor:
    """A 0-d bool tensor, True when every value of ``t`` is finite, without a device sync: its minimum and
    maximum are (a NaN anywhere makes both NaN), one reduction instead of a mask as large as ``t``."""
    if t.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=t.device)
    low, high = torch.aminmax(t.detach())
    return torch.isfinite(low) & torch.isfinite(high)


def finite(logits: Tensor) -> Tensor:
    """Logits with a NaN or an infinity (an overflow: float16 or float32 beyond its range) give no contrast
    and no map: a one-line error naming the first image."""
    if bool(all_finite(logits)):
        return logits
    bad = ~torch.isfinite(logits.detach())
    if bool(bad.any()):
        image = int(bad.flatten(1).any(1).nonzero()[0])
        kind = "NaN" if bool(torch.isnan(logits.detach()[image]).any()) else "an infinite value"
        raise ClassContrastError(f"the model's logits contain {kind} for image {image} (an overflow in "
                                 f"{str(logits.dtype).removeprefix('torch.')}?): no contrast of them is defined; "
                                 "check the model and the input, or run the model in float64")
    return logits
