"""Batched results equal one-image-at-a-time and one-target-at-a-time results; targets semantics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import classcontrast as cc

METHODS = ["gradient", "gradient_x_input", "linear_approx", "gradcam", "xgradcam"]
CONTRASTS = ["original", "mean", "max", "weighted", "probability"]


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_one_by_one(tiny: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    ex = cc.explain(tiny, tiny_x, method, CONTRASTS, cc.TopK(3))
    for b in range(tiny_x.shape[0]):
        for j in range(3):
            t = int(ex.targets[b, j])
            single = cc.explain(tiny, tiny_x[b : b + 1], method, CONTRASTS, t)
            for name in CONTRASTS:
                torch.testing.assert_close(ex[name].maps[b, j], single[name].maps[0, 0], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("method", ["gradient", "gradcam"])
def test_batched_backward_equals_looped_backward(tiny: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    a = cc.explain(tiny, tiny_x, method, CONTRASTS, cc.TopK(4), batched=True)
    b = cc.explain(tiny, tiny_x, method, CONTRASTS, cc.TopK(4), batched=False)
    for name in CONTRASTS:
        torch.testing.assert_close(a[name].maps, b[name].maps, rtol=1e-12, atol=1e-14)


def test_one_image_all_1000_classes_at_once(embedded: cc.ModelBundle, cat_x: torch.Tensor) -> None:
    everything = cc.explain(embedded, cat_x, "gradcam", "weighted", torch.arange(1000)[None])
    assert everything.maps.shape == (1, 1000, 224, 224)
    for t in torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:12].tolist():
        one = cc.explain(embedded, cat_x, "gradcam", "weighted", t)
        torch.testing.assert_close(everything.maps[0, t], one.maps[0, 0], rtol=1e-4, atol=1e-6)


def test_target_specs(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    top = cc.explain(tiny, tiny_x, "gradient", "original")
    logits = top.logits
    assert top.targets[:, 0].tolist() == logits.argmax(1).tolist()
    assert cc.explain(tiny, tiny_x, "gradient", targets=4).targets.tolist() == [[4]] * 3
    assert cc.explain(tiny, tiny_x, "gradient", targets=[1, 2, 3]).targets.tolist() == [[1], [2], [3]]
    assert cc.explain(tiny, tiny_x, "gradient", targets=[[1, 2]] * 3).targets.shape == (3, 2)
    k3 = cc.explain(tiny, tiny_x, "gradient", targets=cc.TopK(3)).targets
    assert k3.tolist() == logits.topk(3, 1).indices.tolist()


@pytest.mark.parametrize(
    ("targets", "match"),
    [(7, "out of range"), (-1, "out of range"), ([1, 2], "one class per image"), ([[1], [2]], "rows"),
     (cc.TopK(8), "more classes"), (1.5, "integer"), ("cat", "is a name, but the model has no class names")],
)
def test_bad_targets(tiny: nn.Module, tiny_x: torch.Tensor, targets: object, match: str) -> None:
    with pytest.raises(cc.ClassContrastError, match=match):
        cc.explain(tiny, tiny_x, "gradient", targets=targets)


def test_float32_and_float64_agree(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    e64 = cc.explain(tiny, tiny_x, "gradcam", "weighted", cc.TopK(2))
    e32 = cc.explain(tiny.float(), tiny_x.float(), "gradcam", "weighted", cc.TopK(2))
    assert e32.maps.dtype == torch.float32 and e64.maps.dtype == torch.float64
    torch.testing.assert_close(e32.maps.double(), e64.maps, rtol=1e-4, atol=1e-5)
