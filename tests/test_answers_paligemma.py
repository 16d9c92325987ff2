"""PaliGemma's candidate answers: the image and the prompt form a bidirectional prefix (token type 0) and the answer
a causal suffix (token type 1) — the scores equal the processor's own prompt-with-suffix sequences through the raw
model, and the maps autograd of them, in float64."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import classcontrast as cc

pytest.importorskip("transformers")
from tests.vlm import assert_contrast_maps, paligemma

CANDIDATES = ["yes", "no", "a wolf"]


def _brute(model: torch.nn.Module, processor, x: torch.Tensor) -> torch.Tensor:
    """(B, K): the processor's own sequence of prompt and suffix (``suffix=candidate``: its token types mark the
    answer), one plain forward per image and candidate."""
    out = torch.zeros(len(x), len(CANDIDATES), dtype=x.dtype)
    blank = Image.new("RGB", (32, 32))
    n = processor(text="is there a dog ?", images=blank, return_tensors="pt")["input_ids"].shape[1]
    for j, c in enumerate(CANDIDATES):
        enc = processor(text="is there a dog ?", images=blank, suffix=c, return_tensors="pt")
        assert enc["token_type_ids"][0, n:].eq(1).all() and enc["token_type_ids"][0, :n].eq(0).all()
        answer = enc["input_ids"][0, n:].tolist()[: len(processor.tokenizer(c, add_special_tokens=False)["input_ids"])]
        for i in range(len(x)):
            logp = model(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                         pixel_values=x[i : i + 1]).logits[0].log_softmax(-1)
            out[i, j] = sum(logp[n - 1 + q, tok] for q, tok in enumerate(answer))
    return out


def test_paligemma_prefix_and_suffix() -> None:
    model, processor = paligemma()
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    assert int((bundle.model.prompt == model.config.image_token_id).sum()) == 16
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), _brute(model, processor, x), rtol=1e-10, atol=1e-10)
        bundle.model.after = 0  # the answer read as part of the bidirectional prefix: another model
        assert not torch.allclose(bundle.model(x), _brute(model, processor, x), rtol=1e-6, atol=1e-6)
        bundle.model.after = 1
    ex = cc.explain(bundle, x[:1], "gradient", ["weighted", cc.Foil("no")], "yes", keep_channels=True)
    assert_contrast_maps(ex, x[:1], lambda v: _brute(model, processor, v))
    rolled = cc.explain(bundle, x[:1], "vit_gradcam", cc.Foil("no"), "yes")
    assert "vision_tower" in rolled.layer and rolled.layer_maps.shape == (1, 1, 4, 4)
