"""Multi-label (sigmoid) heads: each class its own decision. The sigmoid definitions checked against
brute force: `probability` is σ(y_t) (its map σ(1−σ) × original), `weighted` is y_t (the original map,
with a warning when both are asked), `mean`, `max` and `Foil` unchanged; probabilities are independent."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import classcontrast as cc


def test_sigmoid_contrasts_against_their_definitions(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    y = tiny(tiny_x).detach()
    t = torch.tensor([[1, 4], [0, 2], [6, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex = cc.explain(tiny, tiny_x, "gradient_x_input", ["probability", "weighted", "mean", "max", cc.Foil(5)], t,
                        head="sigmoid")
        soft = cc.explain(tiny, tiny_x, "gradient_x_input", ["mean", "max", cc.Foil(5)], t)
    per_class = torch.stack([cc.explain(tiny, tiny_x, "gradient_x_input", "original", c).maps[:, 0]
                             for c in range(7)], 1)  # (B, C, H, W): brute force over all classes
    s = torch.sigmoid(y.gather(1, t))
    for k in range(2):
        own = per_class[torch.arange(3), t[:, k]]
        torch.testing.assert_close(ex["weighted"].maps[:, k], own, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ex["probability"].maps[:, k], (s[:, k] * (1 - s[:, k]))[:, None, None] * own,
                                   rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ex["probability"].scores, s)
    torch.testing.assert_close(ex["weighted"].scores, y.gather(1, t))
    for key in ("mean", "max", "foil:5"):  # logit differences: unchanged by the head
        torch.testing.assert_close(ex[key].maps, soft[key].maps, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(ex["max"].probabilities, torch.sigmoid(y))  # independent, not a softmax
    assert float(ex["max"].probabilities.sum(1).max()) > 1.5


def test_weighted_and_original_together_warn_once_and_heads_are_checked(tiny: nn.Module, tiny_x: torch.Tensor
                                                                        ) -> None:
    with pytest.warns(cc.ClassContrastWarning, match="same map as 'original'"):
        cc.explain(tiny, tiny_x, "gradient", ["original", "weighted"], head="sigmoid")
    with pytest.raises(cc.ClassContrastError, match="head must be"):
        cc.explain(tiny, tiny_x, "gradient", "weighted", head="softmx")


def test_a_bundle_declares_its_head_and_figures_say_independent(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    from classcontrast.models.bundle import Normalize

    bundle = cc.ModelBundle(tiny, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), [f"tag {i}" for i in range(7)],
                            head="sigmoid")
    ex = cc.explain(bundle, tiny_x, "gradcam", "probability", cc.TopK(2))
    torch.testing.assert_close(ex.target_probabilities, torch.sigmoid(tiny(tiny_x).detach()).topk(2, 1).values)
    fig = cc.plot_explanations(torch.rand(3, 3, 12, 12), {"p": ex}, bundle.categories)
    assert any("σ=" in ax.get_title() and "independent" in ax.get_title() for ax in fig.axes)


def test_the_explorer_shows_independent_probabilities(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    from classcontrast.explorer.compute import explorer_data
    from classcontrast.explorer.notebook import explanations_data
    from classcontrast.models.bundle import Normalize

    bundle = cc.ModelBundle(tiny, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), [f"tag {i}" for i in range(7)],
                            head="sigmoid")
    data = explorer_data(bundle, tiny_x, ["gradient"], cc.TopK(2))
    s = torch.sigmoid(tiny(tiny_x).detach())
    for b, e in enumerate(data["entries"]):
        assert e["p"] == pytest.approx(s[b, e["targets"]].tolist(), abs=1e-6)
    assert "independent" in data["subtitle"]
    ex = cc.explain(bundle, tiny_x, "gradient", "probability", cc.TopK(2))
    ex = ex.replace(inputs=tiny_x)
    assert "independent" in explanations_data({"probability": ex})["subtitle"]
