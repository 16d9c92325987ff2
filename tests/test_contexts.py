"""explain inside any torch context and on wrapped models: it works, or fails with one line."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.test_hygiene import _assert_untouched, _snapshot

METHODS = ["gradcam", "gradient", "fullgrad"]


@pytest.fixture
def reference(tiny: nn.Module, tiny_x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {m: cc.explain(tiny, tiny_x, m, "weighted", cc.TopK(2)).maps for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_inside_inference_mode(tiny: nn.Module, tiny_x: torch.Tensor, reference: dict, method: str) -> None:
    before = _snapshot(tiny)
    with torch.inference_mode():
        ex = cc.explain(tiny, tiny_x, method, "weighted", cc.TopK(2))
        assert torch.is_inference_mode_enabled()  # the caller's mode is back
    torch.testing.assert_close(ex.maps, reference[method], rtol=0, atol=0)
    _assert_untouched(tiny, before)


@pytest.mark.parametrize("method", METHODS)
def test_inside_no_grad(tiny: nn.Module, tiny_x: torch.Tensor, reference: dict, method: str) -> None:
    with torch.no_grad():
        ex = cc.explain(tiny, tiny_x, method, "weighted", cc.TopK(2))
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(ex.maps, reference[method], rtol=0, atol=0)


def test_an_input_made_in_inference_mode_is_accepted(tiny: nn.Module, tiny_x: torch.Tensor,
                                                     reference: dict) -> None:
    with torch.inference_mode():
        x = tiny_x.clone()
    assert x.is_inference()
    ex = cc.explain(tiny, x, "gradcam", "weighted", cc.TopK(2))
    torch.testing.assert_close(ex.maps, reference["gradcam"], rtol=0, atol=0)
    assert x.is_inference() and not x.requires_grad  # the caller's tensor is untouched


def test_a_model_made_in_inference_mode_is_a_one_line_error(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    with torch.inference_mode():
        model = copy.deepcopy(tiny).to(torch.float32).to(torch.float64)  # parameters become inference tensors
    if not any(p.is_inference() for p in model.parameters()):
        pytest.skip("this torch version does not make inference-mode parameters here")
    with pytest.raises(cc.ClassContrastError, match="inference_mode") as e:
        cc.explain(model, tiny_x, "gradcam")
    assert "\n" not in str(e.value)


def test_torch_compiled_model(tiny: nn.Module, tiny_x: torch.Tensor, reference: dict) -> None:
    compiled = torch.compile(tiny)
    for method in METHODS:
        torch.testing.assert_close(cc.explain(compiled, tiny_x, method, "weighted", cc.TopK(2)).maps,
                                   reference[method], rtol=0, atol=0)
    ex = cc.explain(compiled, tiny_x, "gradcam", "weighted", cc.TopK(2), layer="_orig_mod.features.3")
    assert ex.layer == "features.3"


def test_data_parallel_model(tiny: nn.Module, tiny_x: torch.Tensor, reference: dict) -> None:
    wrapped = nn.DataParallel(tiny)
    before = _snapshot(wrapped)
    for method in METHODS:
        torch.testing.assert_close(cc.explain(wrapped, tiny_x, method, "weighted", cc.TopK(2)).maps,
                                   reference[method], rtol=0, atol=0)
    assert cc.explain(wrapped, tiny_x, "gradcam", layer="module.features.3").layer == "features.3"
    _assert_untouched(wrapped, before)


def test_channels_last(tiny: nn.Module, tiny_x: torch.Tensor, reference: dict) -> None:
    model = copy.deepcopy(tiny).to(memory_format=torch.channels_last)
    x = tiny_x.contiguous(memory_format=torch.channels_last)
    for method in METHODS:
        torch.testing.assert_close(cc.explain(model, x, method, "weighted", cc.TopK(2)).maps, reference[method],
                                   rtol=1e-10, atol=1e-12)


def test_bfloat16(tiny: nn.Module, tiny_x: torch.Tensor, reference: dict) -> None:
    model = copy.deepcopy(tiny).to(torch.bfloat16)
    x = tiny_x.to(torch.bfloat16)
    for method in METHODS:
        ex = cc.explain(model, x, method, "weighted", cc.TopK(2))
        assert ex.maps.dtype == torch.bfloat16
        a, b = ex.maps.double().flatten(), reference[method].flatten()
        # bfloat16 keeps 8 bits of mantissa: the maps agree in direction, not in the last digits
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.95, method


def test_foil_equal_to_target_warns_once_and_returns_zero(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    top = cc.explain(tiny, tiny_x, "gradient").targets[:, 0]
    with pytest.warns(cc.ClassContrastWarning, match="is also the target") as record:
        ex = cc.explain(tiny, tiny_x, "gradient", cc.Foil(top), top)
    assert len(record) == 1
    assert torch.equal(ex.maps, torch.zeros_like(ex.maps))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cc.explain(tiny, tiny_x, "gradient", cc.Foil((top + 1) % 7), top)  # a real foil: no warning
