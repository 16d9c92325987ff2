"""Each contrast's closed-form gradient against autograd, and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

import classcontrast as cc
from classcontrast.contrasts import CONTRASTS

ALL = [*(cls() for cls in CONTRASTS.values()), cc.Mean(over_all_classes=True), cc.Foil(2), cc.Foil([0, 3, 1, 4])]


@pytest.mark.parametrize("contrast", ALL, ids=repr)
def test_grad_is_the_gradient_of_score(contrast: cc.Contrast) -> None:
    g = torch.Generator().manual_seed(0)
    y = (torch.randn(4, 6, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    t = torch.tensor([1, 5, 2, 2])
    (auto,) = torch.autograd.grad(contrast.score(y, t).sum(), y)
    torch.testing.assert_close(contrast.grad(y.detach(), t), auto, rtol=1e-12, atol=1e-12)


def test_hand_computed_scores() -> None:
    y = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    t0, t2 = torch.tensor([0]), torch.tensor([2])
    assert cc.Original().score(y, t0).item() == 1.0
    assert cc.Mean().score(y, t0).item() == pytest.approx(1 - (2 + 3) / 2)
    assert cc.Mean(over_all_classes=True).score(y, t0).item() == pytest.approx(1 - (2 + 3) / 3)
    assert cc.Max().score(y, t0).item() == pytest.approx(1 - 3)  # runner-up is the top class
    assert cc.Max().score(y, t2).item() == pytest.approx(3 - 2)  # target is the top: second best
    assert cc.Weighted().score(y, t0).item() == pytest.approx(1 - math.log(math.e**2 + math.e**3))
    p0 = math.e / (math.e + math.e**2 + math.e**3)
    assert cc.Probability().score(y, t0).item() == pytest.approx(p0)
    assert cc.Foil(1).score(y, t0).item() == pytest.approx(-1.0)


def test_weighted_alpha_is_softmax_over_the_others() -> None:
    y = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)
    p = torch.softmax(y, 1)[0]
    alpha = cc.Weighted().alpha(y, torch.tensor([2]))[0]
    assert alpha[2] == 0
    for s in (0, 1, 3):
        assert alpha[s].item() == pytest.approx((p[s] / (1 - p[2])).item(), rel=1e-12)


def test_weighted_survives_saturated_probability_in_float32() -> None:
    y = torch.tensor([[60.0, 0.0, -1.0]], dtype=torch.float32)
    t = torch.tensor([0])
    assert torch.softmax(y, 1)[0, 0].item() == 1.0  # p_t rounds to exactly 1
    assert cc.Probability().grad(y, t).abs().max().item() < 1e-20  # the paper's objective vanishes
    w = cc.Weighted().grad(y, t)
    assert w[0, 0].item() == 1.0 and w[0, 1].item() < 0 and w[0, 2].item() < 0
    assert w[0, 1:].sum().item() == pytest.approx(-1.0)


def test_max_and_foil_per_image() -> None:
    y = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    t = torch.tensor([0, 1])
    assert cc.Max().runner_up(y, t).tolist() == [2, 2]
    assert cc.Foil([1, 0]).foils(y).tolist() == [1, 0]


@pytest.mark.parametrize("bad", ["nope", "", 3])
def test_unknown_contrast_is_a_clear_error(bad: object) -> None:
    with pytest.raises(cc.ClassContrastError, match="unknown contrast"):
        cc.get_contrast(bad)  # type: ignore[arg-type]


def test_foil_errors() -> None:
    y = torch.zeros(2, 4)
    with pytest.raises(cc.ClassContrastError, match="out of range"):
        cc.Foil(9).foils(y)
    with pytest.raises(cc.ClassContrastError, match="one per image"):
        cc.Foil([1, 2, 3]).foils(y)
    with pytest.raises(cc.ClassContrastError, match="Foil"):
        cc.get_contrast("foil")
