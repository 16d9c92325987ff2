"""A trained check of vision-language answers: a tiny LLaVA trained in seconds on digit scenes to answer "is there
a <digit>" with yes or no (tests/scenes.py: train_vlm). On one seed (two others passed as well; dropped for the
suite's time), the map of "yes rather than no" lies in the asked digit's box, not in the other digits' boxes, and
the question's digit word carries the prompt's attribution."""

from __future__ import annotations

import pytest
import torch

import classcontrast as cc

pytest.importorskip("transformers")
from tests.scenes import NAMES, make_scenes, train_vlm, vlm_question


@pytest.mark.parametrize("seed", [0])
def test_yes_rather_than_no_on_digit_scenes(seed: int) -> None:
    model, processor = train_vlm(seed)
    scenes = make_scenes(200, seed=4000 + seed, split="test")
    x = (scenes.images - 0.5) / 0.5
    right, own, others, words = 0, [], [], 0
    for d in range(10):
        present = scenes.labels[:, d] > 0
        bundle = cc.answers(model, processor, vlm_question(d), ["yes", "no"])
        with torch.no_grad():
            y = bundle.model(x)
        right += int(((y[:, 0] > y[:, 1]) == present).sum())
        idx = present.nonzero()[:, 0][:6].tolist()
        maps = cc.explain(bundle, x[idx], "gradient_x_input", cc.Foil("no"), "yes").maps[:, 0].clamp(min=0)
        for m, i in zip(maps, idx, strict=True):
            mass = m.sum().clamp(min=1e-12)
            own.append(float(m[scenes.box_mask(i, d)].sum() / mass))
            rest = [float(m[scenes.box_mask(i, o)].sum() / mass) for o in scenes.boxes[i] if o != d]
            others.append(sum(rest) / len(rest))
        net, e = cc.prompt_tokens(bundle, image=x[idx[:1]])
        a = cc.explain(net, e, "gradient_x_input", cc.Foil(1), 0).maps[0, 0]  # yes (0) rather than no (1)
        assert net.tokens == ["is", "there", "a", NAMES[d]]
        words += int(a.abs().argmax()) == 3
    accuracy, own_share, other_share = right / (10 * len(x)), sum(own) / len(own), sum(others) / len(others)
    assert accuracy > 0.75  # measured 0.87-0.88; chance 0.5
    # a 12 x 12 box is 3.5 % of the canvas: the evidence for "yes" concentrates on the asked digit (measured
    # 14-19 %), not on the scene's other digits
    assert own_share > 0.10 and own_share > 2 * other_share, (own_share, other_share)
    assert words >= 8  # the digit word carries the largest attribution of the question's four words
