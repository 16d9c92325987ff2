"""After any call, even one that raises, the model is exactly as it was found."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import classcontrast as cc


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _assert_untouched(model: nn.Module, before: dict[str, object]) -> None:
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__
        assert not m._backward_hooks and not m._backward_pre_hooks, type(m).__name__
    assert all(p.grad is None for p in model.parameters())
    after = _snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    for k, v in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][k], v), k  # type: ignore[index]


@pytest.fixture
def mixed_state(tiny: nn.Module) -> nn.Module:
    """Train mode on some modules, frozen on some parameters: all must survive."""
    tiny.train()
    tiny.features[1].eval()
    tiny.fc.weight.requires_grad_(False)
    return tiny


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "linear_approx", "gradcam", "xgradcam"])
def test_successful_calls_leave_no_trace(mixed_state: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    before = _snapshot(mixed_state)
    ex = cc.explain(mixed_state, tiny_x, method, ["original", "weighted"], cc.TopK(2))
    _assert_untouched(mixed_state, before)
    # eval mode was used: running statistics did not move, and the maps equal an eval-mode model's
    ref = cc.explain(copy.deepcopy(mixed_state).eval(), tiny_x, method, ["original", "weighted"], cc.TopK(2))
    torch.testing.assert_close(ex["weighted"].maps, ref["weighted"].maps)


class Exploding(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner(x)
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"method": "gradcam", "layer": "nope"}, cc.ClassContrastError),
        ({"method": "gradcam", "targets": 99}, cc.ClassContrastError),
        ({"method": "gradcam", "targets": cc.TopK(50)}, cc.ClassContrastError),
        ({"method": "nope"}, cc.ClassContrastError),
        ({"method": "gradient", "contrast": "nope"}, cc.ClassContrastError),
        ({"method": "gradcam", "layer": "fc"}, cc.ClassContrastError),  # not a feature map
    ],
)
def test_failing_calls_leave_no_trace(mixed_state: nn.Module, tiny_x: torch.Tensor, kwargs: dict, error: type) -> None:
    before = _snapshot(mixed_state)
    with pytest.raises(error):
        cc.explain(mixed_state, tiny_x, **kwargs)
    _assert_untouched(mixed_state, before)


def test_model_raising_inside_forward(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    model = Exploding(tiny).train()
    before = _snapshot(model)
    with pytest.raises(cc.ClassContrastError, match="boom"):
        cc.explain(model, tiny_x, "gradcam", layer="inner.features.3")
    _assert_untouched(model, before)


def test_no_grad_context_and_input_untouched(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    x = tiny_x.clone()
    with torch.no_grad():
        ex = cc.explain(tiny, x, "gradient", "weighted")
    assert torch.equal(x, tiny_x) and not x.requires_grad and x.grad is None
    assert ex.maps.abs().sum() > 0 and not ex.maps.requires_grad


def test_layer_running_twice_is_a_clear_error(tiny_x: torch.Tensor) -> None:
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu, nn.Flatten(), nn.LazyLinear(5)).double()
    model(tiny_x)
    with pytest.raises(cc.ClassContrastError, match="ran 2 times"):
        cc.explain(model, tiny_x, "gradcam", layer="1")
