"""What a map's sign means: each explanation's scores, the exact sum of CAM maps right before global
pooling (why the embedded model's default layer is there), the one-line notice under a disagreeing
map, and the display smoothing of input-space maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import classcontrast as cc
from classcontrast.explanation import Explanation
from classcontrast.viz.overlay import smooth

from .conftest import TinyCNN, randomize_bn


def test_scores_are_each_contrasts_objective(tiny: torch.nn.Module, tiny_x: torch.Tensor) -> None:
    y = tiny(tiny_x).detach()
    last = y.argmin(1).tolist()  # each image's least probable class: a foil that is never a target
    contrasts = ["original", "mean", "max", "weighted", "probability", cc.Foil(last)]
    ex = cc.explain(tiny, tiny_x, "gradient", contrasts, cc.TopK(3))
    p = torch.softmax(y, 1)
    for key, e in ex.items():
        for b in range(3):
            for k in range(3):
                t = int(e.targets[b, k])
                others = [s for s in range(y.shape[1]) if s != t]
                expected = {  # written out from the definitions, class by class
                    "original": y[b, t],
                    "mean": y[b, t] - y[b, others].mean(),
                    "max": y[b, t] - y[b, others].max(),
                    "weighted": y[b, t] - torch.logsumexp(y[b, others], 0),
                    "probability": p[b, t],
                    "foil": y[b, t] - y[b, last[b]],
                }[key]
                assert float(e.scores[b, k]) == pytest.approx(float(expected), rel=1e-12, abs=1e-12), key


def test_cam_right_before_global_pooling_sums_to_the_bias_free_contrast(embedded64: torch.nn.Module,
                                                                        photo64: torch.Tensor) -> None:
    """At bn2 (the embedded model's default): Σ map = Σ_c g_c (y_c − b_c), g = ∂O/∂y, b the head's bias —
    so for a contrast linear in y the map sums to the score of the bias-free logits."""
    x = torch.cat([photo64, photo64.flip(-1)])
    contrasts = ["original", "mean", "max", "weighted", cc.Foil(504)]
    bias = embedded64.classifier.bias.detach()
    for method in ("gradcam", "xgradcam", "linear_approx"):
        ex = cc.explain(embedded64, x, method, contrasts, cc.TopK(2), layer="bn2")
        for key, c in zip(ex, contrasts, strict=True):
            e = ex[key]
            contrast = cc.get_contrast(c)
            for k in range(2):
                t = e.targets[:, k]
                g = contrast.grad(e.logits, t)
                expected = (g * (e.logits - bias)).sum(1)
                got = e.layer_maps[:, k].sum((-2, -1))
                torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-8)  # float64 sums of 62720 terms
                if key != "weighted":  # linear contrasts: exactly the score of the bias-free logits
                    torch.testing.assert_close(expected, contrast.score(e.logits - bias, t), rtol=1e-9, atol=1e-9)


def test_the_embedded_default_layer_is_right_before_pooling(embedded: cc.ModelBundle, cat_x: torch.Tensor) -> None:
    ex = cc.explain(embedded, cat_x, "gradcam", ["max", cc.Foil("Egyptian cat")], targets="tiger cat")
    assert ex["max"].layer == "bn2"
    for e in ex.values():
        assert bool((e.scores > 0).all()) and not bool(e.disagreeing().any())  # tiger cat wins: a red map


def test_disagreeing_flags_and_the_figure_notice() -> None:
    torch.manual_seed(0)
    net = randomize_bn(TinyCNN(num_classes=4)).double().eval()
    maps = torch.tensor([[[[1.0, -3.0]]], [[[2.0, 0.5]]]], dtype=torch.float64)  # sums -2 and +2.5
    logits = torch.tensor([[3.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[0], [0]])  # scores under max: +2 and -2
    e = Explanation.made(maps=maps, layer_maps=maps, targets=targets, logits=logits, method="gradient",
                         contrast="max", objective=cc.get_contrast("max"))
    assert e.scores[:, 0].tolist() == [2.0, -2.0]
    assert e.disagreeing()[:, 0].tolist() == [True, True]
    agree = e.replace(layer_maps=-maps, maps=-maps)
    assert agree.disagreeing()[:, 0].tolist() == [False, False]
    fig = cc.plot_explanations(torch.rand(2, 3, 1, 2), {"max": e, "agrees": agree}, [str(i) for i in range(4)])
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert notes == ["note: map sums < 0, score +2", "note: map sums > 0, score -2"]
    assert net is not None


def test_display_smoothing_keeps_sign_and_mass_and_leaves_arrays_alone(embedded: cc.ModelBundle,
                                                                         cat_x: torch.Tensor) -> None:
    delta = np.zeros((41, 41))
    delta[20, 20] = -1.0
    s = smooth(delta, 3.0)
    assert s.sum() == pytest.approx(-1.0, abs=1e-9) and s.max() <= 0 and s[20, 20] == s.min()
    assert np.allclose(smooth(np.full((5, 7), 2.5), 4.0), 2.5)  # constant maps are unchanged, edges too
    ex = cc.explain(embedded, cat_x, "gradient", "weighted")
    raw = ex.maps.clone()
    fig = cc.plot_explanations(embedded.normalize.inverse(cat_x), {"w": ex}, embedded.categories)
    torch.testing.assert_close(ex.maps, raw, rtol=0, atol=0)
    drawn = fig.axes[1].images[-1].get_array()  # the RGBA overlay of the smoothed map
    assert drawn.shape[:2] == (224, 224)


@pytest.mark.filterwarnings("ignore:foil .* is also the target")  # the page's grid has t rather than t
def test_the_explorer_says_when_a_map_disagrees(embedded: cc.ModelBundle, cat_x: torch.Tensor, tmp_path) -> None:
    """The page's data flags exactly the maps `disagreeing()` flags, and the page shows the note."""
    from tools.browser import Browser

    from classcontrast.explorer.compute import explorer_data, write_explorer
    from classcontrast.explorer.page import contrast_keys

    x = torch.cat([cat_x, cat_x.flip(-1)])
    data = explorer_data(embedded, x, ["gradient"], cc.TopK(2))
    entry = data["entries"][0]
    keys = contrast_keys(entry["targets"])
    contrasts = [k if not k.startswith("foil:") else cc.Foil(int(k[5:])) for k in keys]
    ex = cc.explain(embedded, x[:1], "gradient", contrasts, [entry["targets"]])
    expected = torch.stack([e.disagreeing()[0] for e in ex.values()], 1).int().tolist()  # (L, M)
    assert entry["methods"]["gradient"]["disagree"] == expected and any(map(any, expected))
    page = write_explorer(tmp_path / "why.html", embedded, x, ["gradient"], cc.TopK(2))
    (j, c) = next((j, c) for j, row in enumerate(expected) for c, flag in enumerate(row) if flag)
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        b.click(f'button[data-control="target"][data-value="{entry["targets"][j]}"]')
        b.settled()
        b.click(f'button[data-control="contrast"][data-value="{keys[c]}"]')
        b.settled()
        assert "sums to the other sign" in b.eval("document.querySelector('.cc-note').textContent")
