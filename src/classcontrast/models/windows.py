r"""A model run window by window, as MONAI's sliding-window inference runs a segmenter over a volume too large
for one pass: `SlidingWindow` is an ``nn.Module`` whose output is ``monai.inferers.sliding_window_inference``'s
blended output, so every region, contrast and input-space method explains the volume exactly as the user's
own inference computes it.

Memory stays that of one window: while a map is computed, each window's forward pass is checkpointed
(``torch.utils.checkpoint``), its activations recomputed one window at a time during the backward pass, so a
volume larger than what one pass holds still gets its map — equal to autograd through
``sliding_window_inference`` itself (the same windows, blending and padding; MONAI's own code runs), and to
the whole-volume map when one window covers the volume.

The CAM methods read one layer of one forward pass; under a sliding window the layer runs once per window,
so they are refused in one line: use ``gradient``, ``gradient_x_input``, ``integrated_gradients`` or
``smoothgrad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..layers import PiecewiseModel


class SlidingWindow(PiecewiseModel):
    """``model`` run by MONAI's ``sliding_window_inference(x, roi_size, sw_batch_size, model, overlap, mode,
    **options)`` (``mode``: ``"constant"`` or ``"gaussian"`` blending; ``options``: its other arguments, e.g.
    ``sigma_scale``, ``padding_mode``, ``cval``)."""

    def __init__(self, model: nn.Module, roi_size: int | Sequence[int], sw_batch_size: int = 1, overlap: float = 0.25,
                 mode: str = "constant", **options: Any) -> None:
        super().__init__()
        try:
            from monai.inferers import sliding_window_inference
        except ImportError as e:
            raise ClassContrastError("SlidingWindow needs MONAI: pip install 'classcontrast[medical]'") from e
        self._infer = sliding_window_inference
        self.model = model
        self.roi_size = roi_size
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = overlap
        self.mode = mode
        self.options = options

    def forward(self, x: Tensor) -> Tensor:
        checkpointed = torch.is_grad_enabled() and x.requires_grad
        predictor = self._checkpointed if checkpointed else self.model
        return self._infer(x, self.roi_size, self.sw_batch_size, predictor, self.overlap, self.mode, **self.options)

    def _checkpointed(self, patch: Tensor) -> Tensor:
        return torch.utils.checkpoint.checkpoint(self.model, patch, use_reentrant=False)

    def extra_repr(self) -> str:
        return (f"roi_size={self.roi_size}, sw_batch_size={self.sw_batch_size}, overlap={self.overlap}, "
                f"mode={self.mode!r}")


__all__ = ["SlidingWindow"]
