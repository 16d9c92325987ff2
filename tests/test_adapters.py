"""Contrasts in pytorch-grad-cam, Captum and Quantus give classcontrast's own maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import classcontrast as cc
from classcontrast.contrasts import CONTRASTS

ALL = [*(cls() for cls in CONTRASTS.values()), cc.Foil(3)]


@pytest.mark.parametrize("contrast", ALL, ids=repr)
def test_score_all_columns_are_scores(contrast: cc.Contrast) -> None:
    y = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    cols = torch.stack([contrast.score(y, torch.full((3,), t)) for t in range(7)], 1)
    torch.testing.assert_close(contrast.score_all(y), cols, rtol=1e-12, atol=1e-12)


def test_weighted_score_all_is_exact_when_saturated() -> None:
    y = torch.tensor([[60.0, 0.0, -1.0]])
    torch.testing.assert_close(cc.Weighted().score_all(y)[0, 0], 60 - torch.logsumexp(torch.tensor([0.0, -1.0]), 0))


def _minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.flatten(-2).min(-1).values[..., None, None]
    hi = m.flatten(-2).max(-1).values[..., None, None]
    return (m - lo) / (hi - lo + 1e-7)


def test_pytorch_grad_cam_with_a_contrast_target(tiny: nn.Module) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    model = tiny.float()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = [1, 4]
    with pgc.GradCAM(model=model, target_layers=[model.features[3]]) as cam:
        theirs = cam(input_tensor=x, targets=[cc.targets.Weighted(t) for t in targets])  # the one line
    ours = cc.explain(model, x, "gradcam", "weighted", targets, layer="features.3", relu=True).layer_maps[:, 0]
    # pytorch-grad-cam: ReLU, min-max at layer resolution, resize, ReLU and min-max again
    expected = _minmax(F.interpolate(_minmax(ours)[:, None], size=(16, 16), mode="bilinear")[:, 0])
    np.testing.assert_allclose(theirs, expected.numpy(), atol=2e-4)


def test_captum_with_a_contrast_model(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    wrapped = cc.ContrastModel(tiny, "weighted")
    targets = torch.tensor([0, 5, 2])
    gc = captum_attr.LayerGradCam(wrapped, tiny.features[3]).attribute(tiny_x, target=targets)  # the one line
    ours = cc.explain(tiny, tiny_x, "gradcam", "weighted", targets, layer="features.3")
    torch.testing.assert_close(gc[:, 0], ours.layer_maps[:, 0], rtol=1e-10, atol=1e-12)
    leaf = tiny_x.clone().requires_grad_(True)  # Saliency warns when it has to switch this on itself
    sal = captum_attr.Saliency(cc.ContrastModel(tiny, "max")).attribute(leaf, target=targets, abs=False)
    grad = cc.explain(tiny, tiny_x, "gradient", "max", targets, keep_channels=True)
    torch.testing.assert_close(sal, grad.maps[:, 0], rtol=1e-10, atol=1e-12)


def test_quantus_explain_func(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    maps = cc.quantus_explain(tiny, tiny_x.numpy(), np.array([1, 2, 3]), method="xgradcam", contrast="mean")
    ours = cc.explain(tiny, tiny_x, "xgradcam", "mean", [1, 2, 3])
    assert maps.shape == (3, 1, 12, 12)
    np.testing.assert_allclose(maps, ours.maps.numpy(), rtol=1e-10)


def test_a_contrast_model_keeps_a_module_that_holds_a_model(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    """A module with a ``model`` attribute (a wrapper computing something else from it) is wrapped as it is —
    only a ModelBundle is unwrapped to its module."""

    class Doubled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * self.model(x)

    with torch.no_grad():
        scores = cc.ContrastModel(Doubled(), "original")(tiny_x)
        torch.testing.assert_close(scores, 2 * tiny(tiny_x))
