"""Checked by mypy in `make test` (never run): what the public signatures promise a type checker — `explain` gives an
`Explanation` for one contrast and `Explanations` for a list or tuple of them; rows are plain records."""

from __future__ import annotations

from typing import Any, assert_type

import torch

import classcontrast as cc
from classcontrast.explanation import Explanation, Explanations


def promised(model: torch.nn.Module, x: torch.Tensor) -> None:
    assert_type(cc.explain(model, x), Explanation)
    assert_type(cc.explain(model, x, "gradient", "weighted"), Explanation)
    assert_type(cc.explain(model, x, contrast=cc.Foil(1)), Explanation)
    assert_type(cc.explain(model, x, contrast=["weighted", "original"]), Explanations)
    assert_type(cc.explain(model, x, "gradcam", ("weighted", cc.Foil(1)), cc.TopK(2)), Explanations)
    assert_type(cc.explain(model, x).rows(), list[dict[str, Any]])
