"""FullGrad: completeness on a hand-checkable network, float64 contrast identities, the abs variant."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.conftest import randomize_bn
from tests.reference import input_jacobian
from tests.test_exactness import _check, _contrasts

# the foil lists include each target itself on purpose (its map must be zero)
pytestmark = pytest.mark.filterwarnings("ignore::classcontrast.errors.ClassContrastWarning")


class FullRes(nn.Module):
    """Conv(bias)-BN-ReLU twice at full resolution (no upsampling), mean pooling, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU())
        self.fc = nn.Linear(5, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))


def test_completeness_sums_to_the_logit() -> None:
    """For a piecewise-linear net, Σ_pixels FullGrad(y_t) = y_t − (classifier bias)_t exactly."""
    torch.manual_seed(0)
    model = randomize_bn(FullRes()).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ex = cc.explain(model, x, "fullgrad", ["original", cc.Foil(0)], cc.TopK(2))
    y, t = ex["original"].logits, ex["original"].targets
    expected = y.gather(1, t) - model.fc.bias.detach()[t]
    torch.testing.assert_close(ex["original"].maps.sum((-2, -1)), expected, rtol=1e-10, atol=1e-10)
    foil = y.gather(1, t) - y[:, :1] - (model.fc.bias.detach()[t] - model.fc.bias.detach()[0])
    torch.testing.assert_close(ex["foil"].maps.sum((-2, -1)), foil, rtol=1e-10, atol=1e-10)


def test_contrasts_match_brute_force(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    """Per-class FullGrad maps from per-class explanations (original contrast, one class at a time)."""
    c = 7
    per_class = torch.stack([cc.explain(tiny, tiny_x, "fullgrad", "original", s).maps[:, 0] for s in range(c)])
    y, _ = input_jacobian(tiny, tiny_x)
    ex = cc.explain(tiny, tiny_x, "fullgrad", _contrasts(foil=2), cc.TopK(3))
    _check(ex, per_class, y, foil=2)


def test_probability_identity_and_mostly_negative(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    ex = cc.explain(tiny, tiny_x, "fullgrad", ["weighted", "probability"], cc.TopK(2))
    p = ex["weighted"].target_probabilities[..., None, None]
    torch.testing.assert_close(ex["probability"].maps, p * (1 - p) * ex["weighted"].maps, rtol=1e-10, atol=1e-14)


def test_abs_variant_is_non_negative_and_bounded(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    ex = cc.explain(tiny, tiny_x, "fullgrad", "original", abs=True)
    n_terms = 1 + sum(isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) for m in tiny.modules())
    assert ex.maps.min() >= 0 and ex.maps.max() <= n_terms + 1e-9


def test_embedded_model_fullgrad_identity(embedded: cc.ModelBundle, cat_x: torch.Tensor) -> None:
    """timm's BatchNormAct2d contributes its pre-activation output; the identity holds in float64."""
    import copy

    model = copy.deepcopy(embedded.model).double()
    ex = cc.explain(model, cat_x.double(), "fullgrad", ["weighted", "probability"], cc.TopK(2))
    p = ex["weighted"].target_probabilities[..., None, None]
    torch.testing.assert_close(ex["probability"].maps, p * (1 - p) * ex["weighted"].maps, rtol=1e-9, atol=1e-14)
