"""A dynamic-resolution vision-language model (Qwen2-VL: any image size, the image flattened into a patch
sequence) as a classifier over candidate answers: the bundle takes the image on its own grid and flattens it as
the processor does; scores, every contrast's map and the vocabulary mode against brute force through the raw
model with the processor's own inputs, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc

pytest.importorskip("transformers")
from tests.vlm import assert_contrast_maps, qwen2_vl

CANDIDATES = ["yes", "no", "a wolf"]


@pytest.fixture(scope="module")
def vlm() -> tuple:
    return qwen2_vl()


def _patches(x: torch.Tensor, p: int = 8, m: int = 2, t: int = 2) -> torch.Tensor:
    """The slow reference of Qwen2-VL's patch sequence of one image x (C, H, W): merge blocks row by row, within
    each its m × m patches row by row, each patch (C, T, p, p) flattened with the image repeated T times."""
    rows = []
    for bh in range(x.shape[1] // (p * m)):
        for bw in range(x.shape[2] // (p * m)):
            for mh in range(m):
                for mw in range(m):
                    r, c = (bh * m + mh) * p, (bw * m + mw) * p
                    patch = x[:, r : r + p, c : c + p]
                    rows.append(torch.stack([patch] * t, 1).reshape(-1))
    return torch.stack(rows)


def _brute(model: torch.nn.Module, processor, text: str, tokens: list[list[int]], x: torch.Tensor) -> torch.Tensor:
    """(B, K): one plain forward of the raw model per image and candidate, on the processor's input ids and token
    types, the reference patch sequence of x."""
    out = torch.zeros(len(x), len(tokens), dtype=x.dtype)
    for i in range(len(x)):
        h, w = x.shape[-2:]
        enc = processor(text=text, images=Image.new("RGB", (w, h)), return_tensors="pt")
        grid = torch.tensor([[1, h // 8, w // 8]])
        for j, c in enumerate(tokens):
            ids = torch.cat([enc["input_ids"][0], torch.tensor(c)])[None]
            types = torch.cat([enc["mm_token_type_ids"][0], torch.zeros(len(c), dtype=torch.long)])[None]
            logp = model(input_ids=ids, mm_token_type_ids=types, pixel_values=_patches(x[i]),
                         image_grid_thw=grid).logits[0].log_softmax(-1)
            n = enc["input_ids"].shape[1]
            out[i, j] = sum(logp[n - 1 + q, tok] for q, tok in enumerate(c))
    return out


def test_the_image_on_its_grid_is_the_processors_patch_sequence(vlm: tuple) -> None:
    """bundle.transform lays the processor's patch sequence back on the image grid: an image whose sides are
    already multiples of 16 comes back pixel for pixel, and the module flattens it into the processor's own
    sequence (and the slow reference's)."""
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    assert bundle.info["text"] == "USER: <|vision_start|><|image_pad|><|vision_end|> is there a dog ? ASSISTANT:"
    pixels = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    grid = bundle.preprocess(image)
    assert grid.shape == (3, 32, 48)
    torch.testing.assert_close(grid, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, rtol=0, atol=1e-6)
    theirs = processor(text=bundle.info["text"], images=image, return_tensors="pt")
    x = bundle.transform(image)[None].double()
    mine = bundle.model.pixels(x)
    torch.testing.assert_close(mine["pixel_values"], theirs["pixel_values"].double(), rtol=0, atol=1e-5)
    torch.testing.assert_close(mine["pixel_values"], _patches(x[0]), rtol=0, atol=0)
    torch.testing.assert_close(mine["image_grid_thw"], theirs["image_grid_thw"])
    # a larger image is resized by the processor's own rule (sides in multiples of 16, within its pixel budget)
    assert bundle.preprocess(Image.new("RGB", (200, 100))).shape[1:] == tuple(
        8 * int(v) for v in processor(images=Image.new("RGB", (200, 100)), return_tensors="pt")["image_grid_thw"][0,
                                                                                                                    1:])
    with pytest.raises(cc.ClassContrastError, match="multiples of 16"):
        bundle.model(torch.zeros(1, 3, 30, 48, dtype=torch.float64))


def test_scores_and_every_contrast_against_brute_force(vlm: tuple) -> None:
    """Logits = each candidate's summed token log-probability (multi-token candidates included) at two image sizes
    (the prompt's image tokens follow the size); every contrast's gradient map = autograd through the raw model;
    the vocabulary mode = the model's next-token logits."""
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    tokens = [processor.tokenizer(c, add_special_tokens=False)["input_ids"] for c in CANDIDATES]
    text = bundle.info["text"]
    for shape in ((2, 3, 32, 48), (1, 3, 48, 16)):
        x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(shape[-1]))
        with torch.no_grad():
            torch.testing.assert_close(bundle.model(x), _brute(model, processor, text, tokens, x), rtol=1e-10,
                                       atol=1e-10)
    x = torch.randn(1, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ex = cc.explain(bundle, x, "gradient", ["original", "weighted", "probability", cc.Foil("no")], "yes",
                    keep_channels=True)
    assert_contrast_maps(ex, x, lambda v: _brute(model, processor, text, tokens, v))
    vocab = cc.answers(model, processor, "is there a dog ?", None)
    enc = processor(text=text, images=Image.new("RGB", (48, 32)), return_tensors="pt")
    with torch.no_grad():
        want = model(input_ids=enc["input_ids"], mm_token_type_ids=enc["mm_token_type_ids"],
                     pixel_values=_patches(x[0]), image_grid_thw=enc["image_grid_thw"]).logits[:, -1]
        torch.testing.assert_close(vocab.model(x), want, rtol=1e-10, atol=1e-10)


def test_occlusion_lands_on_the_image_grid(vlm: tuple) -> None:
    """Occluding a window of the image on its grid is occluding those pixels: the window's value is the drop of
    log p(yes) - log p(no) when exactly those pixels are zeroed in the raw model's patch sequence."""
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    tokens = [processor.tokenizer(c, add_special_tokens=False)["input_ids"] for c in CANDIDATES]
    x = torch.randn(1, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    maps = cc.explain(bundle, x, "occlusion", cc.Foil("no"), "yes", window=16, stride=16).maps
    covered = x.clone()
    covered[..., 16:32, 32:48] = 0
    with torch.no_grad():
        clean, hidden = (_brute(model, processor, bundle.info["text"], tokens, v) for v in (x, covered))
    drop = (clean[0, 0] - clean[0, 1]) - (hidden[0, 0] - hidden[0, 1])
    torch.testing.assert_close(maps[0, 0, 20, 40], 3 * drop)  # the window over all 3 channels, summed


def test_vit_gradcam_on_the_patch_sequence_tower(vlm: tuple) -> None:
    """ViT GradCAM finds the tower's blocks and lays their token sequence (merge blocks, then patches within each)
    back on the image's patch grid: equal to GradCAM computed from hooked tokens and autograd, placed patch by patch
    with the slow reference's order; attention rollout (no class token to read) is refused in one line."""
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    tokens = [processor.tokenizer(c, add_special_tokens=False)["input_ids"] for c in CANDIDATES]
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ex = cc.explain(bundle, x, "vit_gradcam", cc.Foil("no"), "yes")
    assert ex.layer == "model.model.visual.blocks.0" and ex.layer_maps.shape == (2, 1, 4, 6)
    for i in range(2):
        seen = []
        hook = model.model.visual.blocks[0].register_forward_hook(lambda m, a, out, seen=seen: seen.append(out))
        try:
            y = _brute(model, processor, bundle.info["text"], tokens, x[i : i + 1])
        finally:
            hook.remove()
        grads = torch.autograd.grad(y[0, 0] - y[0, 1], seen)
        g = sum(grads)  # every candidate's forward recomputes the tower: its tokens' gradients add up
        weights = g.mean(0)
        values = seen[0].detach() @ weights  # (N,) one value per token in the tower's order
        want = torch.zeros(4, 6, dtype=torch.float64)
        n = 0
        for bh in range(2):
            for bw in range(3):
                for mh in range(2):
                    for mw in range(2):
                        want[bh * 2 + mh, bw * 2 + mw] = values[n]
                        n += 1
        torch.testing.assert_close(ex.layer_maps[i, 0], want, rtol=1e-6, atol=1e-9)
    with pytest.raises(cc.ClassContrastError, match="attention rollout needs"):
        cc.explain(bundle, x, "attention_rollout", cc.Foil("no"), "yes")


def test_the_prompts_words_with_the_image_fixed(vlm: tuple) -> None:
    """Gradient x embedding of the prompt's words for "yes rather than no" under multimodal RoPE: autograd on the
    raw model's input embeddings over the processor's own sequences; the vision and image tokens are not words."""
    from tests.test_prompt_tokens import _embedding_grads, _logp

    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", ["yes", "no"])
    image = torch.randn(1, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    net, x = cc.prompt_tokens(bundle, image=image)
    assert net.tokens == ["USER:", "is", "there", "a", "dog", "?", "ASSISTANT:"]
    with torch.no_grad():
        torch.testing.assert_close(net(x), bundle.model(image), rtol=1e-10, atol=1e-10)
    ex = cc.explain(net, x, "gradient_x_input", cc.Foil(1), 0)
    enc = processor(text=bundle.info["text"], images=Image.new("RGB", (48, 32)), return_tensors="pt")
    prompt = enc["input_ids"][0].tolist()
    cand = [processor.tokenizer(a, add_special_tokens=False)["input_ids"] for a in ("yes", "no")]
    runs = [{"input_ids": torch.tensor([prompt + c]), "pixel_values": _patches(image[0]),
             "image_grid_thw": enc["image_grid_thw"],
             "mm_token_type_ids": torch.cat([enc["mm_token_type_ids"][0], torch.zeros(len(c), dtype=torch.long)])[None]}
            for c in cand]
    grads, embeds = _embedding_grads(model, runs, lambda logits: _logp(logits[0], len(prompt), cand[0])
                                     - _logp(logits[1], len(prompt), cand[1]))
    words = torch.tensor([t in net.tokens for t in processor.tokenizer.convert_ids_to_tokens(prompt)])
    want = sum((g[: len(prompt)][words] * e[: len(prompt)][words]).sum(-1) for g, e in zip(grads, embeds, strict=True))
    torch.testing.assert_close(ex.maps[0, 0], want, rtol=1e-6, atol=1e-9 * float(want.abs().max()))


def test_a_saved_folder_loads_as_the_same_model(tmp_path) -> None:
    """hf:FOLDER of a Qwen2-VL (save_pretrained of model and processor) loads as the same candidate scores, and the
    command line explains a photo through it."""
    from classcontrast.models.answers import load_answers
    from tests.test_cli import run

    model, processor = qwen2_vl(dtype=torch.float32)
    model.save_pretrained(tmp_path / "qwen")
    processor.save_pretrained(tmp_path / "qwen")
    loaded = load_answers(f"hf:{tmp_path / 'qwen'}", "is there a dog ?", CANDIDATES)
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    image = cc.sample_image("chelsea").resize((48, 40))
    x = bundle.transform(image)[None]
    assert loaded.info["text"] == bundle.info["text"] and x.shape == (1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(loaded.transform(image)[None]), bundle.model(x))
    image.save(tmp_path / "a.png")
    cc.sample_image("coffee").resize((30, 70)).save(tmp_path / "b.png")  # another size: another patch count
    assert run(["explain", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", f"hf:{tmp_path / 'qwen'}",
                "--prompt", "is there a dog ?", "--answers", "yes", "no", "--target", "yes", "--foil", "no", "--method",
                "vit_gradcam",
                "--out", str(tmp_path / "why.png"), "--save-maps", str(tmp_path / "m.npz")]) == 0
    assert sorted(p.name for p in tmp_path.glob("why_*.png")) == ["why_000_a.png", "why_001_b.png"]
    with np.load(tmp_path / "m.npz") as z:
        maps = z["maps/vit_gradcam/foil:no/1"]
    want = cc.explain(loaded, loaded.transform(cc.load_image(tmp_path / "b.png"))[None], "vit_gradcam",
                      cc.Foil("no"), "yes").maps
    assert maps.shape == want.shape and want.shape[-2:] != x.shape[-2:]
    np.testing.assert_allclose(maps, want.numpy(), rtol=1e-4, atol=1e-6 * float(want.abs().max()))


def test_qwen2_5_vl_scores_maps_and_its_window_ordered_tower() -> None:
    """Qwen2.5-VL (the same processor, a tower with window attention): scores and a contrast's map against brute
    force through the raw model; the ViT methods, whose token order its windows change, refused in one line."""
    from tests.vlm import qwen2_5_vl

    model, processor = qwen2_5_vl()
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    tokens = [processor.tokenizer(c, add_special_tokens=False)["input_ids"] for c in CANDIDATES]
    x = torch.randn(1, 3, 32, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), _brute(model, processor, bundle.info["text"], tokens, x),
                                   rtol=1e-10, atol=1e-10)
    ex = cc.explain(bundle, x, "gradient", ["weighted", cc.Foil("no")], "yes", keep_channels=True)
    assert_contrast_maps(ex, x, lambda v: _brute(model, processor, bundle.info["text"], tokens, v))
    with pytest.raises(cc.ClassContrastError, match="windows"):
        cc.explain(bundle, x, "vit_gradcam", cc.Foil("no"), "yes")
