"""Units objects are stateless: what a call's images decide (targets, head, a region's mask, an object's row and box)
is an immutable `Selection` passed from step to step, never attributes set on the units. Checked two ways: a units
object's attributes are the same objects after a call as before it, and one units object serving a second call on
other images gives that call's own result (a units object that kept the first call's objects, masks or targets would
explain the first images' units on the second)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import classcontrast as cc
import classcontrast.engine as engine
from classcontrast.units.base import Selection, Units
from tests.test_detection import _faster_rcnn, yolos  # noqa: F401  (a fixture)
from tests.test_regions import TinySeg


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Units, dict[str, Any]]]]:
    """Every units object a call makes, with its attributes as made."""
    out: list[tuple[Units, dict[str, Any]]] = []
    claim, from_output = engine.claim, engine.from_output

    def keep(units: Units | None) -> Units | None:
        if units is not None:
            out.append((units, dict(vars(units))))
        return units

    monkeypatch.setattr(engine, "claim", lambda *a, **k: keep(claim(*a, **k)))
    monkeypatch.setattr(engine, "from_output", lambda *a, **k: keep(from_output(*a, **k)))
    yield out


def _segmenter() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    return TinySeg().eval(), torch.randn(2, 3, 24, 24, generator=g), torch.randn(2, 3, 24, 24, generator=g)


CASES = [  # (model, first images, other images, targets, methods)
    ("classifier", cc.Threshold(0.2, 2), ["gradient", "occlusion"]),
    ("segmenter", cc.Region.all(2), ["gradient", "integrated_gradients", "occlusion"]),
    ("detr", cc.Detections(top=2, threshold=0.0), ["gradient", "smoothgrad", "occlusion"]),
    ("faster_rcnn", cc.Detections(top=2, threshold=0.5), ["gradient", "smoothgrad"]),
]


def _model(name: str, tiny: nn.Module, detr: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    if name == "classifier":
        return tiny, torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=g), \
            torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=g)
    if name == "segmenter":
        return _segmenter()
    if name == "detr":
        return detr, torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=g), \
            torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=g)
    return _faster_rcnn(), torch.rand(1, 3, 96, 128, generator=g), torch.rand(1, 3, 96, 128, generator=g)


OPTIONS = {"occlusion": {"window": 8, "stride": 8}, "smoothgrad": {"samples": 2, "sigma": 0.0},
           "integrated_gradients": {"steps": 3}}


@pytest.mark.parametrize(("name", "targets", "methods"), CASES, ids=[c[0] for c in CASES])
def test_a_call_sets_nothing_on_its_units(name: str, targets: object, methods: list[str], tiny: nn.Module,
                                          yolos: nn.Module, made: list[tuple[Units, dict[str, Any]]]) -> None:  # noqa: F811
    model, x, _ = _model(name, tiny, yolos)
    for method in methods:
        cc.explain(model, x, method, ["weighted", cc.Foil(0)], targets, **OPTIONS.get(method, {}))
    assert len(made) == len(methods)
    for units, before in made:
        after = vars(units)
        assert after.keys() == before.keys(), f"{type(units).__name__} gained {set(after) - set(before)}"
        assert all(after[k] is before[k] for k in before), type(units).__name__


@pytest.mark.parametrize(("name", "targets", "methods"), CASES, ids=[c[0] for c in CASES])
def test_one_units_object_serves_another_call(name: str, targets: object, methods: list[str], tiny: nn.Module,
                                              yolos: nn.Module, made: list[tuple[Units, dict[str, Any]]],  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, other = _model(name, tiny, yolos)
    for method in methods:
        made.clear()
        opts = OPTIONS.get(method, {})
        own = cc.explain(model, other, method, ["weighted", cc.Foil(0)], targets, **opts)
        cc.explain(model, x, method, ["weighted", cc.Foil(0)], targets, **opts)
        (first, _), = made[-1:]
        with monkeypatch.context() as m:  # the second call is given the first call's units object
            m.setattr(engine, "claim", lambda net, *a, _u=first, **k: _u if type(_u).claims(net) else None)
            m.setattr(engine, "from_output", lambda *a, _u=first, **k: _u)
            again = cc.explain(model, other, method, ["weighted", cc.Foil(0)], targets, **opts)
        for key in own:
            scale = float(own[key].maps.abs().max())
            torch.testing.assert_close(again[key].maps, own[key].maps, rtol=1e-5, atol=1e-6 * scale)
            torch.testing.assert_close(again[key].targets, own[key].targets)
            torch.testing.assert_close(again[key].scores, own[key].scores)
            assert [[_plain(u) for u in image] for image in again[key].units] == \
                [[_plain(u) for u in image] for image in own[key].units]


def _plain(unit: Any) -> dict[str, Any]:
    """A unit's row with arrays as lists (a region's mask, an object's box), to compare by value."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in unit.row().items()}


def test_a_selection_is_immutable() -> None:
    sel = Selection(targets=torch.zeros(1, 1, dtype=torch.long), head="softmax")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sel.head = "sigmoid"  # type: ignore[misc]
