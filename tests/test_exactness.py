"""Every one-pass contrast equals its definition built from per-class maps over ALL classes (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.reference import (
    contrast_slow,
    gradcam_slow,
    input_jacobian,
    layer_jacobian,
    linear_approx_slow,
    relerr,
    xgradcam_slow,
)

# the foil lists include each target itself on purpose (its map must be zero)
pytestmark = pytest.mark.filterwarnings("ignore::classcontrast.errors.ClassContrastWarning")

KINDS = ["original", "mean", "max", "weighted", "probability", "foil"]
CAM_SLOW = {"gradcam": gradcam_slow, "xgradcam": xgradcam_slow, "linear_approx": linear_approx_slow}


def _contrasts(foil: int) -> list[object]:
    return [k if k != "foil" else cc.Foil(foil) for k in KINDS]


def _check(ex: cc.Explanations, phi: torch.Tensor, y: torch.Tensor, foil: int, tol: float = 1e-8) -> None:
    """phi: per-class maps (C, B, h, w); ex: the engine's maps for every contrast and target."""
    for kind, name in zip(KINDS, ex, strict=True):
        e = ex[name]
        for b in range(e.targets.shape[0]):
            for j, t in enumerate(e.targets[b].tolist()):
                ref = contrast_slow(phi[:, b], y[b], t, kind, foil)
                got = e.layer_maps[b, j]
                assert relerr(got, ref) < tol, (kind, b, t, relerr(got, ref))


@pytest.mark.parametrize("method", list(CAM_SLOW))
def test_cam_contrasts_match_brute_force(tiny: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    layer = tiny.features[3]  # the second conv, pre-BN (as the study's features.40)
    y, a, g = layer_jacobian(tiny, tiny_x, layer)
    phi = torch.stack([
        torch.stack([CAM_SLOW[method](a[b], g[s, b]) for b in range(a.shape[0])]) for s in range(g.shape[0])
    ])
    ex = cc.explain(tiny, tiny_x, method, _contrasts(foil=4), cc.TopK(3), layer="features.3")
    _check(ex, phi, y, foil=4)


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input"])
def test_input_contrasts_match_brute_force(tiny: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    y, jac = input_jacobian(tiny, tiny_x)
    per_channel = jac if method == "gradient" else jac * tiny_x[None]
    phi = per_channel.sum(2)
    ex = cc.explain(tiny, tiny_x, method, _contrasts(foil=0), [[1, 2], [3, 0], [6, 5]])
    _check(ex, phi, y, foil=0)


def test_probability_is_pt_one_minus_pt_times_weighted(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    for method in ["gradient", "gradient_x_input", "linear_approx", "gradcam", "xgradcam"]:
        ex = cc.explain(tiny, tiny_x, method, ["weighted", "probability"], cc.TopK(2))
        p = ex["weighted"].target_probabilities[..., None, None]
        torch.testing.assert_close(ex["probability"].maps, p * (1 - p) * ex["weighted"].maps, rtol=1e-10, atol=1e-14)


def test_relu_is_applied_after_the_signed_map(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    signed = cc.explain(tiny, tiny_x, "gradcam", "weighted", layer="features.3")
    relu = cc.explain(tiny, tiny_x, "gradcam", "weighted", layer="features.3", relu=True)
    assert (signed.layer_maps < 0).any()
    torch.testing.assert_close(relu.layer_maps, signed.layer_maps.clamp_min(0))


@pytest.fixture(scope="module")
def head_jacobian(embedded64: nn.Module, photo64: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return layer_jacobian(embedded64, photo64, embedded64.conv_head)


# Per-class maps for all 1000 classes at once, by broadcasting (the loop versions above are checked
# on the tiny model; these are the same formulas written with plain tensor arithmetic).
CAM_BROADCAST = {
    "gradcam": lambda a, g: (g.mean((-2, -1), keepdim=True) * a).sum(-3),
    "xgradcam": lambda a, g: ((a / (a.abs().sum((-2, -1), keepdim=True) + 1e-7) * g).sum((-2, -1), keepdim=True)
                              * a).sum(-3),
    "linear_approx": lambda a, g: (a * g).sum(-3),
}


@pytest.mark.parametrize("method", list(CAM_SLOW))
def test_embedded_model_cam_contrasts_match_brute_force(embedded64: nn.Module, photo64: torch.Tensor,
                                                        head_jacobian: tuple[torch.Tensor, ...],
                                                        method: str) -> None:
    """All 1000 ImageNet classes on the real EfficientNet-Lite0, layer conv_head (pre-BN)."""
    y, a, g = head_jacobian
    phi = CAM_BROADCAST[method](a[None], g)
    ex = cc.explain(embedded64, photo64, method, _contrasts(foil=504), cc.TopK(3), layer="conv_head")
    _check(ex, phi, y, foil=504)


def test_embedded_model_input_contrasts_match_brute_force(embedded64: nn.Module, embedded: cc.ModelBundle) -> None:
    """The full 1000-class input Jacobian of the real model at 32×32 (one image copy per class)."""
    x = torch.nn.functional.interpolate(embedded.transform(cc.sample_image("rocket"))[None], size=32).double()
    y, jac = input_jacobian(embedded64, x)
    for method, per_channel in [("gradient", jac), ("gradient_x_input", jac * x[None])]:
        ex = cc.explain(embedded64, x, method, _contrasts(foil=3), cc.TopK(2))
        _check(ex, per_channel.sum(2), y, foil=3)
