"""Idefics3 / SmolVLM's candidate answers: the processor splits an image into tiles plus the whole image at tile
size; the bundle takes the resized image on its grid and makes the tiles (cut exactly) and the whole view (the
processor's resize) itself — scores and maps against brute force through the raw model, the whole view against an
independent reference (PIL's own resampling matrices); ViT GradCAM on the tiles laid back on the image's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc

pytest.importorskip("transformers")
from tests.vlm import assert_contrast_maps, idefics3

CANDIDATES = ["yes", "no", "a wolf"]


def _resampling(n: int, t: int) -> torch.Tensor:
    """(t, n) PIL's Lanczos weights from n pixels to t, read off by resizing the identity (float image)."""
    eye = Image.fromarray(np.eye(n, dtype=np.float32), mode="F").resize((n, t), Image.LANCZOS)
    return torch.from_numpy(np.array(eye)).double()


def _frames(x: torch.Tensor, t: int = 32) -> torch.Tensor:
    """The slow reference of one normalised image's frames (C, H, W) -> (N + 1, C, t, t): tiles row by row, then
    the whole image resized width first, each pass clipped to the pixel range (mean = std = 0.5)."""
    h, w = x.shape[-2:]
    if (h, w) == (t, t):  # one tile: the image itself
        return x[None]
    tiles = [x[:, r : r + t, q : q + t] for r in range(0, h, t) for q in range(0, w, t)]
    wide = torch.einsum("chw,jw->chj", x, _resampling(w, t)).clamp(-1, 1)
    whole = torch.einsum("ih,chj->cij", _resampling(h, t), wide).clamp(-1, 1)
    return torch.stack([*tiles, whole])


def _brute(model: torch.nn.Module, processor, text: str, x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(x), len(CANDIDATES), dtype=x.dtype)
    h, w = x.shape[-2:]
    prompt = processor(text=text, images=Image.new("RGB", (w, h)), return_tensors="pt")["input_ids"][0]
    for i in range(len(x)):
        frames = _frames(x[i])[None]
        for j, c in enumerate(CANDIDATES):
            answer = processor.tokenizer(c, add_special_tokens=False)["input_ids"]
            ids = torch.cat([prompt, torch.tensor(answer)])[None]
            logp = model(input_ids=ids, pixel_values=frames).logits[0].log_softmax(-1)
            out[i, j] = sum(logp[len(prompt) - 1 + q, tok] for q, tok in enumerate(answer))
    return out


def test_tiles_and_the_whole_view() -> None:
    model, processor = idefics3()
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    image = Image.fromarray((np.random.default_rng(0).random((50, 64, 3)) * 255).astype(np.uint8))
    x = bundle.transform(image)[None].double()
    assert x.shape == (1, 3, 64, 64)
    theirs = processor(text=bundle.info["text"], images=image, return_tensors="pt")
    mine = bundle.model.pixels(x)
    assert mine["pixel_values"].shape == theirs["pixel_values"].shape == (1, 5, 3, 32, 32)
    torch.testing.assert_close(mine["pixel_values"][:, :4], theirs["pixel_values"][:, :4].double(), rtol=0,
                               atol=1e-6)  # the tiles: cut exactly
    torch.testing.assert_close(mine["pixel_values"][:, 4], theirs["pixel_values"][:, 4].double(), rtol=0,
                               atol=1.01 / 255 / 0.5)  # the whole view: the processor's 8-bit rounding
    torch.testing.assert_close(mine["pixel_values"][0], _frames(x[0]), rtol=0, atol=1e-6)
    assert torch.equal(bundle.model.encoded(64, 64)["input_ids"], theirs["input_ids"][0])
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), _brute(model, processor, bundle.info["text"], x), rtol=1e-9,
                                   atol=1e-9)
    ex = cc.explain(bundle, x, "gradient", ["weighted", cc.Foil("no")], "yes", keep_channels=True)
    assert_contrast_maps(ex, x, lambda v: _brute(model, processor, bundle.info["text"], v))
    _vit_gradcam_on_the_tiles(model, processor, bundle, x)
    net, _ = cc.prompt_tokens(bundle, image=x)
    assert net.tokens == ["is", "there", "a", "dog", "?"]  # not the tile tags the processor adds (<row_1_col_1>...)


def _vit_gradcam_on_the_tiles(model, processor, bundle, x: torch.Tensor) -> None:
    """ViT GradCAM finds the tower's blocks and lays the tiles' tokens on the image's patch grid (the whole view's
    tokens left out): equal to GradCAM of hooked tokens and autograd, placed tile by tile, patch by patch."""
    ex = cc.explain(bundle, x, "vit_gradcam", cc.Foil("no"), "yes")
    assert ex.layer == "model.model.vision_model.encoder.layers.0" and ex.layer_maps.shape == (1, 1, 8, 8)
    seen = []
    block = model.model.vision_model.encoder.layers[0]
    hook = block.register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        y = _brute(model, processor, bundle.info["text"], x)
    finally:
        hook.remove()
    grads = torch.autograd.grad(y[0, 0] - y[0, 1], seen)
    tiles, g = seen[0].detach()[:4], sum(grads)[:4]  # (4 tiles, 16 patches, D); the 5th frame: the whole view
    values = tiles @ g.reshape(-1, g.shape[-1]).mean(0)  # the weights: the gradient's mean over the tiles' patches
    want = torch.zeros(8, 8, dtype=torch.float64)
    for tile in range(4):
        for patch in range(16):
            want[(tile // 2) * 4 + patch // 4, (tile % 2) * 4 + patch % 4] = values[tile, patch]
    torch.testing.assert_close(ex.layer_maps[0, 0], want, rtol=1e-6, atol=1e-9)
    with pytest.raises(cc.ClassContrastError, match="attention rollout needs"):
        cc.explain(bundle, x, "attention_rollout", cc.Foil("no"), "yes")


def test_without_splitting_the_image_is_one_frame() -> None:
    model, processor = idefics3(split=False)
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    image = Image.fromarray((np.random.default_rng(1).random((50, 64, 3)) * 255).astype(np.uint8))
    x = bundle.transform(image)[None].double()
    assert x.shape == (1, 3, 32, 32)
    theirs = processor(text=bundle.info["text"], images=image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(bundle.model.pixels(x)["pixel_values"], theirs.double(), rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), _brute(model, processor, bundle.info["text"], x), rtol=1e-9,
                                   atol=1e-9)
