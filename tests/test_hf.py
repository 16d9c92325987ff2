"""Hugging Face transformers classifiers (randomly initialised from configs, offline) and other output forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import classcontrast as cc
from tests.reference import gradcam_slow, layer_jacobian
from tests.test_cli import run
from tests.test_exactness import _check, _contrasts
from tests.test_hygiene import _assert_untouched, _snapshot

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::classcontrast.errors.ClassContrastWarning")

VIT = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64,
       "image_size": 32, "patch_size": 8, "num_labels": 6}


def _vit(kind: str = "vit") -> nn.Module:
    torch.manual_seed(0)
    cls, cfg = {"vit": ("ViTForImageClassification", "ViTConfig"),
                "deit": ("DeiTForImageClassification", "DeiTConfig"),
                "beit": ("BeitForImageClassification", "BeitConfig")}[kind]
    extra = {"use_relative_position_bias": True} if kind == "beit" else {}
    return getattr(transformers, cls)(getattr(transformers, cfg)(**VIT, **extra)).double().eval()


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1], num_labels=6)
    return transformers.ResNetForImageClassification(cfg).double().eval()


class Logits(nn.Module):
    """The HF model's logits as a plain tensor (what the slow references differentiate)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


@pytest.fixture
def x32() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


class Returns(nn.Module):
    def __init__(self, inner: nn.Module, form: str) -> None:
        super().__init__()
        self.inner, self.form = inner, form

    def forward(self, x: torch.Tensor) -> object:
        y = self.inner(x)
        return {"tuple": (y, "extra"), "dict": {"logits": y, "other": 1},
                "object": transformers.modeling_outputs.ImageClassifierOutput(logits=y)}[self.form]


@pytest.mark.parametrize("form", ["tuple", "dict", "object"])
def test_models_returning_tuples_dicts_and_output_objects(tiny: nn.Module, tiny_x: torch.Tensor, form: str) -> None:
    ref = cc.explain(tiny, tiny_x, "gradcam", ["original", "weighted"], cc.TopK(2))
    got = cc.explain(Returns(tiny, form), tiny_x, "gradcam", ["original", "weighted"], cc.TopK(2))
    for k in ref:
        torch.testing.assert_close(got[k].maps, ref[k].maps, rtol=0, atol=0)
    wrapped = cc.ContrastModel(Returns(tiny, form), "weighted")  # adapters too
    torch.testing.assert_close(wrapped(tiny_x), cc.ContrastModel(tiny, "weighted")(tiny_x))


def test_hf_vit_gradcam_contrasts_match_brute_force(x32: torch.Tensor) -> None:
    vit = _vit()
    name, block = cc.methods.transformer_blocks(vit)[1]
    assert name == "vit.layers.1"
    y, tokens, g = layer_jacobian(Logits(vit), x32, block)

    def grid(t: torch.Tensor) -> torch.Tensor:  # drop the class token: 16 patches on a 4×4 grid
        return t[..., 1:, :].reshape(*t.shape[:-2], 4, 4, t.shape[-1]).movedim(-1, -3)

    a, gg = grid(tokens), grid(g)
    phi = torch.stack([torch.stack([gradcam_slow(a[b], gg[s, b]) for b in range(2)]) for s in range(6)])
    ex = cc.explain(vit, x32, "vit_gradcam", _contrasts(foil=5), cc.TopK(3), layer=1)
    _check(ex, phi, y, foil=5)


@pytest.mark.parametrize("kind", ["vit", "deit", "beit"])
def test_hf_attention_rollout_and_vit_gradcam(kind: str, x32: torch.Tensor) -> None:
    model = _vit(kind)
    before = _snapshot(model)
    implementation = model.config._attn_implementation
    with torch.no_grad():
        y = model(x32).logits
    ex = cc.explain(model, x32, "attention_rollout", ["original", "weighted"], cc.TopK(2))
    assert ex["weighted"].layer_maps.shape == (2, 2, 4, 4)  # prefix tokens (1, or 2 for DeiT) dropped
    torch.testing.assert_close(ex["weighted"].logits, y, rtol=1e-7, atol=1e-7)  # capture leaves the logits
    assert model.config._attn_implementation == implementation
    assert ex["weighted"].layer_maps.abs().sum() > 0 and not torch.equal(ex["weighted"].maps, ex["original"].maps)
    grad = cc.explain(model, x32, "vit_gradcam", "weighted", cc.TopK(2))
    assert grad.layer_maps.shape == (2, 2, 4, 4) and grad.layer == f"{kind}.layers.1"
    _assert_untouched(model, before)


def test_hf_cnn_default_layer_and_brute_force(x32: torch.Tensor) -> None:
    net = _resnet()
    ex = cc.explain(net, x32, "gradcam", _contrasts(foil=2), cc.TopK(3))
    assert ex["original"].layer == "resnet.encoder.stages.1"  # the last spatial feature map, found alone
    layer = dict(net.named_modules())[ex["original"].layer]
    y, a, g = layer_jacobian(Logits(net), x32, layer)
    phi = torch.stack([torch.stack([gradcam_slow(a[b], g[s, b]) for b in range(2)]) for s in range(6)])
    _check(ex, phi, y, foil=2)
    torch.manual_seed(0)
    convnext = transformers.ConvNextForImageClassification(transformers.ConvNextConfig(
        num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=4)).eval()
    assert cc.explain(convnext, x32.float(), "gradcam").layer == "convnext.encoder.stages.1"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf")
    cfg = transformers.ViTConfig(**{**VIT, "num_labels": 3}, id2label={0: "cat", 1: "espresso", 2: "rocket"},
                                 label2id={"cat": 0, "espresso": 1, "rocket": 2})
    torch.manual_seed(0)
    transformers.ViTForImageClassification(cfg).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_load_a_save_pretrained_folder(saved: Path) -> None:
    bundle = cc.load_model(f"hf:{saved}")
    assert bundle.categories == ["cat", "espresso", "rocket"] and bundle.num_classes == 3
    img = cc.sample_image("coffee")
    processor = transformers.AutoImageProcessor.from_pretrained(saved)
    ref = processor(images=img, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(bundle.transform(img), ref, rtol=1e-5, atol=1e-5)  # the model's own preprocessing
    ex = cc.explain(bundle, bundle.transform(img)[None], "attention_rollout", "weighted")
    assert ex.maps.shape == (1, 1, 32, 32)


def test_save_pretrained_folder_through_the_cli(saved: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "p.png"
    cc.sample_image("rocket").save(photo)
    out = tmp_path / "why.png"
    assert run(["explain", str(photo), "--model", f"hf:{saved}", "--method", "vit_gradcam", "attention_rollout",
                "--out", str(out), "--html", str(tmp_path / "why.html")]) == 0
    assert out.exists() and (tmp_path / "why.html").exists()
    printed = capsys.readouterr().out
    assert any(name in printed for name in ("cat", "espresso", "rocket"))  # the folder's own class names


def test_an_offline_hub_id_fails_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from classcontrast.models import hub

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "reachable", lambda: False)
    with pytest.raises(cc.ClassContrastError, match="save_pretrained"):
        cc.load_model("hf:google/vit-base-patch16-224")
    assert run(["explain", "--model", "hf:google/vit-base-patch16-224", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not get hf:google/vit-base-patch16-224") and len(err.splitlines()) == 1
