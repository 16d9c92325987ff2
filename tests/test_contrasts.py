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


DENSE = [*ALL, cc.ContrastCAM(3), cc.ContrastCAM([0, 4]), cc.Finer(k=2), cc.FinerMean(k=2),
         cc.Weighted().for_head("sigmoid"), cc.Probability().for_head("sigmoid")]


@pytest.mark.parametrize("per_row", [False, True], ids=["a class per position", "a class per row"])
@pytest.mark.parametrize("contrast", DENSE, ids=repr)
def test_score_and_grad_at_every_position_equal_the_rows(contrast: cc.Contrast, per_row: bool) -> None:
    """score_map / grad_map on logits (N, C, *S) — computed in place for the contrasts that take them, moved into
    rows for the others — equal score / grad on every position's row of logits (the slow reference)."""
    from classcontrast.contrast_base import per_row as repeat

    g = torch.Generator().manual_seed(1)
    y = torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64) * 3
    y[0, :, 0, 0] = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # ties: the first maximum, as torch
    t = repeat(torch.tensor([2, 5]), y[:, 0]) if per_row else torch.randint(0, 6, (2, 3, 4), generator=g)
    if isinstance(contrast, cc.Foil) and torch.as_tensor(contrast.foil).numel() > 1:
        contrast = cc.Foil([0, 3])  # one foil per image of two
    if isinstance(contrast, cc.Foil):
        t = t.clamp(max=1) if per_row else torch.where(t == 3, 4, t)  # never the foil (0 or 3) itself
    rows = y.movedim(1, -1).reshape(-1, 6)
    image = torch.arange(2).repeat_interleave(12)
    each = contrast.select(image, 2)
    torch.testing.assert_close(contrast.score_map(y, t), each.score(rows, t.reshape(-1)).reshape(2, 3, 4),
                               rtol=1e-12, atol=1e-12)
    rows_grad = each.grad(rows, t.reshape(-1)).reshape(2, 3, 4, 6).movedim(-1, 1)
    torch.testing.assert_close(contrast.grad_map(y, t), rows_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, dim", [((7, 5), 1), ((2, 3, 6, 5), 1), ((2, 3, 6, 5), 2), ((3, 16, 4), 1),
                                        ((4, 17), 1)])
def test_argmax_is_torchs_with_its_ties(shape: tuple[int, ...], dim: int) -> None:
    from classcontrast.contrast_base import argmax

    g = torch.Generator().manual_seed(0)
    for y in (torch.randn(shape, generator=g), torch.randint(0, 3, shape, generator=g).float()):  # many ties
        assert torch.equal(argmax(y, dim), y.argmax(dim))


def test_all_finite_sees_any_nan_or_infinity() -> None:
    from classcontrast.outputs import all_finite

    y = torch.randn(3, 5, 7, 7)
    assert bool(all_finite(y)) and bool(all_finite(torch.zeros(0)))
    for bad in (float("nan"), float("inf"), -float("inf")):
        for dtype in (torch.float16, torch.float32, torch.float64):
            z = y.to(dtype).clone()
            z[2, 4, 6, 1] = bad
            assert not bool(all_finite(z))
