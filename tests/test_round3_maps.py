"""Review round three, maps: no NaN or infinity is ever returned as a map, every method option has its type, a
numerically zero map says so, SmoothGrad's noise is drawn a batch at a time (issue 38: items 2, 6, 8, 15; RISE
centred, item 5, is in test_gradient_free.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import classcontrast as cc


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(20, 4)).double().eval()


X = torch.rand(2, 3, 10, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


# --- item 2: non-finite maps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "options", "match"), [
    ("occlusion", {"window": (3, 2, 2), "stride": (1, 3, 3)}, "stride .* is longer than the window"),
    ("occlusion", {"window": 2, "stride": 5}, "stride 5 is longer than the window 2"),
    ("smoothgrad", {"sigma": float("inf")}, "sigma must be a finite number"),
    ("smoothgrad", {"sigma": float("nan")}, "sigma must be a finite number"),
    ("occlusion", {"baseline": float("inf")}, "baseline must be a finite number"),
    ("occlusion", {"baseline": torch.full((3, 10, 14), float("nan"))}, "baseline holds NaN"),
    ("feature_ablation", {"baseline": float("-inf"), "segments": 4}, "baseline must be a finite number"),
    ("integrated_gradients", {"baseline": torch.full((3, 10, 14), float("inf")), "steps": 2}, "baseline holds NaN"),
])
def test_options_that_make_non_finite_maps_are_refused_up_front(method: str, options: dict, match: str) -> None:
    """Each of these returned maps with NaN or inf on today's main (uncovered pixels 0/0, infinite noise or
    baseline), drawn blank."""
    with pytest.raises(cc.ClassContrastError, match=match) as e:
        cc.explain(_net(), X, method, "weighted", **options)
    assert "\n" not in str(e.value)


class _Zero(nn.Module):
    """A model whose logits are exactly 0 whatever the input (its head's weights and bias are 0): every logit
    contrast's objective is 0, and AblationCAM's weights (O − O_k)/O are 0/0."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def test_a_non_finite_map_is_never_returned() -> None:
    """AblationCAM of an objective that is exactly 0 is one line naming the method and why (NaN maps on today's
    main); a foil equal to its target (an objective identically 0) is an exact zero map, even for AblationCAM."""
    model = _Zero().double().eval()
    with pytest.raises(cc.ClassContrastError, match=r"ablationcam gave a map with NaN .* divides each channel's drop"):
        cc.explain(model, X, "ablationcam", "original", layer="features.1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)  # the foil is the target: said once
        net = _net()
        with torch.no_grad():
            top = net(X).argmax(1)
        same = cc.explain(net, X, "ablationcam", [cc.Foil(top), "original"], top[:, None], layer="0")
    assert torch.equal(same["foil"].maps, torch.zeros_like(same["foil"].maps))
    assert bool(torch.isfinite(same["original"].maps).all())


def test_the_one_check_catches_a_method_that_makes_nan() -> None:
    """Any method's non-finite map — here a user's method — is caught in the engine's one place."""

    class Broken(cc.methods.Gradient):
        name = "broken"

        def compute(self, rec, grads):  # type: ignore[no-untyped-def]
            out = super().compute(rec, grads)
            return out / out.abs().sum() * float("nan")

    with pytest.raises(cc.ClassContrastError, match="broken gave a map with NaN or infinite values"):
        cc.explain(_net(), X, Broken(), ["original", "weighted"])


# --- item 8: every option has its type ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "options", "match"), [
    ("smoothgrad", {"samples": 2.5}, "smoothgrad: samples must be a whole number, got 2.5"),
    ("smoothgrad", {"samples": True}, "samples must be a whole number, got True"),
    ("smoothgrad", {"seed": "1"}, "seed must be a whole number"),
    ("smoothgrad", {"squared": 1}, "squared must be True or False, got 1"),
    ("integrated_gradients", {"steps": 2.5}, "steps must be a whole number, got 2.5"),
    ("integrated_gradients", {"keep_channels": "yes"}, "keep_channels must be True or False"),
    ("gradcam", {"relu": "no"}, "gradcam: relu must be True or False, got 'no'"),
    ("fullgrad", {"abs": 0}, "abs must be True or False"),
    ("kernel_shap", {"samples": 9.5, "segments": 3}, "samples must be a whole number"),
    ("rise", {"cells": 2.2}, "cells must be a whole number"),
    ("rise", {"centred": "no"}, "centred must be True or False"),
    ("occlusion", {"window": (3, 2.5, 2)}, "window must be a whole number or a tuple of whole numbers"),
    ("occlusion", {"internal_batch_size": 4.5}, "internal_batch_size must be a whole number"),
    ("attention_rollout", {"discard_ratio": "0.5"}, "discard_ratio must be a finite number"),
    ("ablationcam", {"ablation": float("nan")}, "ablation must be a finite number or None"),
])
def test_every_option_has_its_type(method: str, options: dict, match: str) -> None:
    """Integers are integers and booleans booleans (today's main turned samples=2.5 into 2, samples=True into 1,
    relu="no" into a ReLU); the same check when a method object is made directly."""
    with pytest.raises(cc.ClassContrastError, match=match):
        cc.explain(_net(), X, method, "weighted", **options)
    with pytest.raises(cc.ClassContrastError, match=match):
        cc.methods.METHODS[method](**options)


def test_whole_floats_and_numpy_numbers_are_accepted() -> None:
    import numpy as np

    method = cc.methods.SmoothGrad(samples=np.int64(3), sigma=np.float32(0.1), squared=np.bool_(False), seed=2.0)
    assert (method.samples, method.seed, method.squared) == (3, 2, False) and isinstance(method.sigma, float)
    a = cc.explain(_net(), X, method, "weighted").maps
    b = cc.explain(_net(), X, "smoothgrad", "weighted", samples=3, sigma=float(np.float32(0.1)), seed=2).maps
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- item 15: SmoothGrad's noise a batch at a time ------------------------------------------------------------------


def test_smoothgrad_draws_its_noise_one_internal_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """No draw holds more than one sample (today's main drew every sample of an image at once: a 96³ volume at 200
    samples, 2 GB), and the maps equal those of a call that draws all at once (`noise`) and of another chunking."""
    import classcontrast.methods.smooth as smooth

    sizes: list[int] = []
    randn = torch.randn

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = randn(*args, **kwargs)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(smooth.torch, "randn", recording)
    x = torch.rand(2, 1, 6, 7, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(3, 4)).double().eval()
    ex = cc.explain(net, x, "smoothgrad", ["original", "weighted"], samples=7, internal_batch_size=3)
    assert sizes and max(sizes) == 6 * 7 * 8 and len(sizes) == 2 * 7
    monkeypatch.setattr(smooth.torch, "randn", randn)
    method = cc.methods.SmoothGrad(samples=7)
    noise = torch.cat([method.noise(x, b) for b in range(2)])
    assert noise.shape == (14, 1, 6, 7, 8)
    leaf = (x.repeat_interleave(7, 0) + noise).requires_grad_(True)
    spec = cc.get_contrast("weighted")
    t = ex["weighted"].targets[:, 0].repeat_interleave(7)
    (g,) = torch.autograd.grad(spec.score(net(leaf), t).sum(), leaf)
    torch.testing.assert_close(ex["weighted"].maps[:, 0], g.reshape(2, 7, 1, 6, 7, 8).mean(1)[:, 0])
    other = cc.explain(net, x, "smoothgrad", "weighted", samples=7, internal_batch_size=5)
    torch.testing.assert_close(other.maps, ex["weighted"].maps, rtol=1e-12, atol=1e-15)
