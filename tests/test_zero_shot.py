"""Zero-shot classifiers: prompts are the classes. On randomly initialised Hugging Face CLIP and SigLIP
models built from small configs (offline, with a tiny tokenizer written here): the bundle's logits equal
the model's own ``logits_per_image``, and every contrast's map equals brute-force autograd of that
contrast through the raw model; every method runs on the vision tower."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import classcontrast as cc

transformers = pytest.importorskip("transformers")
CLASSES = ["husky", "wolf", "arctic fox", "cat"]


def _tokenizer(folder: Path, kind: str = "clip") -> object:
    chars = list("abcdefghijklmnopqrstuvwxyz.")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")), vocab


def _clip(tmp_path: Path) -> tuple[object, object]:
    tok, vocab = _tokenizer(tmp_path)
    end = vocab["<|endoftext|>"]
    cfg = transformers.CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": end,
                     "bos_token_id": vocab["<|startoftext|>"], "pad_token_id": end},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8}, projection_dim=8)
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).double().eval()
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, transformers.CLIPProcessor(image_processor=images, tokenizer=tok)


def test_clip_logits_and_every_contrast_against_the_raw_model(tmp_path: Path) -> None:
    model, processor = _clip(tmp_path)
    bundle = cc.zero_shot(model, processor, CLASSES, template="a photo of a {}.")
    assert bundle.categories == CLASSES and bundle.head == "softmax"
    photo = cc.sample_image("chelsea")
    raw = processor(text=[f"a photo of a {c}." for c in CLASSES], images=photo, return_tensors="pt", padding=True)
    x = raw["pixel_values"].double()
    with torch.no_grad():
        expected = model(**{**raw, "pixel_values": x}).logits_per_image
        torch.testing.assert_close(bundle.model(x), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(bundle.transform(photo)[None].double(), x, rtol=1e-5, atol=1e-5)  # same pixels
    contrasts = ["original", "mean", "max", "weighted", "probability", cc.Foil("wolf")]
    ex = cc.explain(bundle, x, "gradient", contrasts, targets="husky", keep_channels=True)
    for key, c in zip(ex, contrasts, strict=True):
        leaf = x.clone().requires_grad_(True)
        y = model(**{**raw, "pixel_values": leaf}).logits_per_image  # through the raw HF model
        score = cc.get_contrast(c if not isinstance(c, cc.Foil) else cc.Foil(1)).score(y, torch.tensor([0]))
        (g,) = torch.autograd.grad(score.sum(), leaf)
        torch.testing.assert_close(ex[key].maps[:, 0], g, rtol=1e-8, atol=1e-12)


def test_every_method_runs_on_the_vision_tower(tmp_path: Path) -> None:
    model, processor = _clip(tmp_path)
    bundle = cc.zero_shot(model, processor, CLASSES)
    x = bundle.transform(cc.sample_image("coffee"))[None].double()
    for method in ("gradient_x_input", "integrated_gradients", "smoothgrad", "vit_gradcam", "attention_rollout"):
        opts = cc.methods.options_for(method, {"steps": 2, "samples": 2})
        ex = cc.explain(bundle, x, method, ["weighted", cc.Foil("cat")], cc.TopK(2), **opts)
        assert all(torch.isfinite(e.maps).all() and e.maps.abs().sum() > 0 for e in ex.values()), method


def test_siglip_is_a_sigmoid_head(tmp_path: Path) -> None:
    tok, vocab = _tokenizer(tmp_path)
    cfg = transformers.SiglipConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "pad_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8})
    torch.manual_seed(0)
    model = transformers.SiglipModel(cfg).double().eval()
    bundle = cc.zero_shot(model, tok, CLASSES)
    assert bundle.head == "sigmoid"
    tokens = tok([f"a photo of a {c}." for c in CLASSES], padding="max_length", max_length=32, truncation=True,
                 return_tensors="pt")
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=tokens["input_ids"], pixel_values=x).logits_per_image
        torch.testing.assert_close(bundle.model(x), expected, rtol=1e-10, atol=1e-10)
    ex = cc.explain(bundle, x, "gradient", ["probability", "max"], targets="wolf", keep_channels=True)
    leaf = x.clone().requires_grad_(True)
    y = model(input_ids=tokens["input_ids"], pixel_values=leaf).logits_per_image
    (g,) = torch.autograd.grad(torch.sigmoid(y[0, 1]), leaf)  # probability = sigma(y_t) under SigLIP
    torch.testing.assert_close(ex["probability"].maps[:, 0], g, rtol=1e-8, atol=1e-12)


def test_zero_shot_needs_a_clip_model_and_distinct_classes(tmp_path: Path, tiny: torch.nn.Module) -> None:
    model, processor = _clip(tmp_path)
    with pytest.raises(cc.ClassContrastError, match="distinct class names"):
        cc.zero_shot(model, processor, ["cat", "cat"])
    with pytest.raises(cc.ClassContrastError, match="needs '\\{\\}'"):
        cc.zero_shot(model, processor, CLASSES, template="a photo")
    with pytest.raises(cc.ClassContrastError, match="not a CLIP-style model"):
        cc.zero_shot(tiny, processor, CLASSES)


def test_a_save_pretrained_folder_through_the_command_line(tmp_path: Path) -> None:
    from tests.test_cli import run

    model, processor = _clip(tmp_path)
    folder = tmp_path / "clip"
    model.float().save_pretrained(folder)
    processor.save_pretrained(folder)
    npz = tmp_path / "why.npz"
    assert run(["explain", "--model", f"hf:{folder}", "--classes", "husky", "wolf", "arctic fox", "--template",
                "a photo of a {}.", "--contrast", "weighted", "--foil", "wolf", "--method", "vit_gradcam",
                "--out", str(tmp_path / "why.png"), "--save-maps", str(npz), "--html", str(tmp_path / "why.html")]) == 0
    with np.load(npz) as z:
        assert z["probabilities"].shape == (1, 3) and "maps/vit_gradcam/foil:wolf" in z.files
    page = (tmp_path / "why.html").read_text()  # the explorer page names the prompts' classes
    assert all(json.dumps(c) in page for c in ["husky", "wolf", "arctic fox"])
    bundle = cc.models.zero_shot.load_zero_shot(f"hf:{folder}", ["husky", "wolf", "arctic fox"])
    x = bundle.transform(cc.sample_image("chelsea"))[None]
    prompts = [f"a photo of a {c}." for c in ["husky", "wolf", "arctic fox"]]
    raw = processor(text=prompts, images=cc.sample_image("chelsea"), return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), model.float()(**raw).logits_per_image, rtol=1e-4, atol=1e-5)
    assert run(["explain", "--model", "efficientnet_lite0", "--classes", "cat", "dog"]) == 2  # not a CLIP model


def test_an_audit_of_class_folders_through_a_zero_shot_model(tmp_path: Path) -> None:
    """`classcontrast audit FOLDERS --model hf:<clip> --classes ...`: the folders' names are the prompts'
    classes; every image's prediction and the pairs equal a count through the raw model's logits."""
    from classcontrast.data.sources import bundled_source
    from tests.test_cli import run

    model, processor = _clip(tmp_path)
    folder = tmp_path / "clip"
    model.float().save_pretrained(folder)
    processor.save_pretrained(folder)
    data = tmp_path / "data"
    views = bundled_source().samples[:12]
    for i, s in enumerate(views):  # 12 photos filed under 3 of the 4 classes
        (data / CLASSES[i % 3]).mkdir(parents=True, exist_ok=True)
        s.load().save(data / CLASSES[i % 3] / f"{i}.png")
    out = tmp_path / "out"
    assert run(["audit", str(data), "--model", f"hf:{folder}", "--classes", *CLASSES, "--out", str(out),
                "--pairs", "2", "--examples", "1", "--method", "vit_gradcam"]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["labelled"] and report["classes"] == CLASSES
    prompts = [f"a photo of a {c}." for c in CLASSES]
    counts: dict[tuple[int, int], int] = {}
    for label in range(3):
        for f in sorted((data / CLASSES[label]).iterdir()):
            raw = processor(text=prompts, images=cc.load_image(f), return_tensors="pt", padding=True)
            with torch.no_grad():
                predicted = int(model.float()(**raw).logits_per_image.argmax())
            if predicted != label:
                counts[label, predicted] = counts.get((label, predicted), 0) + 1
    assert sorted(p["count"] for p in report["pairs"]) == sorted(counts.values(), reverse=True)[:2][::-1]
    assert all(counts[p["true_index"], p["predicted_index"]] == p["count"] for p in report["pairs"])


def test_an_open_clip_model(tmp_path: Path) -> None:
    """open_clip (optional): a tiny randomly initialised CLIP; the bundle's logits equal the model's own
    scaled cosine similarities and every contrast's map equals autograd through the raw model; the ViT
    methods find its blocks."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8,
                                                          image_size=32),
                 text_cfg=CLIPTextCfg(context_length=16, vocab_size=49408, width=16, heads=2, layers=1)).double().eval()
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=16)  # its BPE vocabulary ships in the package
    bundle = cc.zero_shot(model, tokenizer, CLASSES)
    x = bundle.transform(cc.sample_image("chelsea"))[None].double()
    assert x.shape == (1, 3, 32, 32) and bundle.head == "softmax"
    tokens = tokenizer([f"a photo of a {c}." for c in CLASSES])

    def logits(pixels: torch.Tensor) -> torch.Tensor:
        image, text, scale = model(pixels, tokens)
        return scale * image @ text.T

    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), logits(x), rtol=1e-10, atol=1e-10)
    contrasts = ["original", "weighted", "probability", cc.Foil("wolf")]
    ex = cc.explain(bundle, x, "gradient", contrasts, targets="husky", keep_channels=True)
    for key, c in zip(ex, contrasts, strict=True):
        leaf = x.clone().requires_grad_(True)
        score = cc.get_contrast(c if not isinstance(c, cc.Foil) else cc.Foil(1)).score(logits(leaf), torch.tensor([0]))
        (g,) = torch.autograd.grad(score.sum(), leaf)
        torch.testing.assert_close(ex[key].maps[:, 0], g, rtol=1e-8, atol=1e-12)
    for method in ("vit_gradcam", "attention_rollout", "integrated_gradients"):
        maps = cc.explain(bundle, x, method, "weighted", targets="husky").maps
        assert maps.shape == (1, 1, 32, 32) and torch.isfinite(maps).all() and maps.abs().sum() > 0, method
