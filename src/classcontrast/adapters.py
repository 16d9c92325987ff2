"""Contrasts inside other libraries: pytorch-grad-cam targets, a Captum-ready model, a Quantus explain_func.

* pytorch-grad-cam: ``GradCAM(model, layers)(x, targets=[cc.targets.Weighted(t)])`` (the target
  callables live in `classcontrast.targets`).
* Captum (or anything that differentiates a model output column): ``cc.ContrastModel(model,
  "weighted")`` returns (B, C) whose column t is the contrast's score for target t, so
  ``LayerGradCam(cc.ContrastModel(model, "weighted"), layer).attribute(x, target=t)`` explains it.
* Quantus: ``explain_func=cc.quantus_explain`` with ``explain_func_kwargs={"method": ..., "contrast": ...}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .contrasts import Contrast, get_contrast
from .engine import explain, unwrap_model
from .outputs import logits_of


class ContrastModel(nn.Module):
    """Wraps a classifier so that output column t is the contrast's score with target t.

    Any attribution method that explains one output column (Captum's ``target=``) then explains
    the contrast. The wrapped model's modules are the original ones, so layer methods can hook them.
    """

    def __init__(self, model: nn.Module, contrast: str | Contrast = "weighted") -> None:
        super().__init__()
        self.model = unwrap_model(model)  # a bundle's module; a module that holds a ``model`` is itself
        self.contrast = get_contrast(contrast)

    def forward(self, x: Tensor) -> Tensor:
        return self.contrast.score_all(logits_of(self.model(x)))


def quantus_explain(model: nn.Module, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
    """A Quantus ``explain_func``: maps (N, 1, H, W) as numpy for numpy or tensor inputs.

    Keyword arguments ``method`` (default ``"gradcam"``), ``contrast`` (default ``"weighted"``) and any
    method option (``layer``, ``relu``...) are passed to [`explain`][classcontrast.engine.explain]; ``device``
    places the inputs.
    """
    device = kwargs.pop("device", None) or next(model.parameters()).device
    method = kwargs.pop("method", "gradcam")
    contrast = kwargs.pop("contrast", "weighted")
    kwargs.pop("softmax", None)
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs, device=device)
    dtype = next(model.parameters()).dtype
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, Tensor) else targets, device=device)
    ex = explain(model, x.to(dtype), method, contrast, t.long().reshape(-1), **kwargs)
    return ex.maps.detach().cpu().numpy()
