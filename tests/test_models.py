"""The model zoo: the embedded default classifies real photos, offline failures are clear."""

from __future__ import annotations

import pytest
import torch
import torchvision

import classcontrast as cc
from classcontrast.layers import default_feature_layer

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_embedded_model_sees_a_cat_and_an_espresso(embedded: cc.ModelBundle) -> None:
    assert embedded.num_classes == 1000 and not embedded.model.training
    x = torch.stack([embedded.transform(cc.sample_image(n)) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        top = embedded.model(x).argmax(1).tolist()
    assert top[0] in CAT_CLASSES, embedded.categories[top[0]]
    assert embedded.categories[top[1]] == "espresso"


def test_normalize_round_trip(embedded: cc.ModelBundle) -> None:
    px = embedded.preprocess(cc.sample_image("rocket"))
    assert px.min() >= 0 and px.max() <= 1 and px.shape == (3, 224, 224)
    torch.testing.assert_close(embedded.normalize.inverse(embedded.normalize(px)), px)


@pytest.mark.parametrize(
    ("arch", "layer"),
    [("vgg16_bn", "features.42"), ("resnet18", "layer4"), ("mobilenet_v3_small", "features"),
     ("densenet121", "features")],
)
def test_default_layer_is_the_last_spatial_feature_map(arch: str, layer: str) -> None:
    model = torchvision.models.get_model(arch, weights=None).eval()
    assert default_feature_layer(model, torch.randn(1, 3, 64, 64)) == layer


def test_default_layer_of_the_embedded_model(embedded: cc.ModelBundle, cat_x: torch.Tensor) -> None:
    assert cc.explain(embedded.model, cat_x, "gradcam").layer == "bn2"  # the automatic rule
    assert cc.explain(embedded, cat_x, "gradcam").layer == "bn2"  # the bundle's own layer
    assert cc.explain(embedded, cat_x, "gradcam", layer="blocks.5").layer == "blocks.5"


def test_torchvision_random_init_and_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    b = cc.load_model("torchvision:resnet18", weights=None, num_classes=5)
    assert b.num_classes == 5 and b.categories[0] == "class 0"
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": b.model.state_dict()}, path)
    again = cc.load_model("torchvision:resnet18", weights=str(path), num_classes=5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), b.model(x))
    with pytest.raises(cc.ClassContrastError, match="does not fit"):
        cc.load_model("torchvision:resnet18", weights=str(path), num_classes=7)


def test_offline_torchvision_weights_say_how_to_supply_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.error import URLError

    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(cc.ClassContrastError, match="weights=PATH"):
        cc.load_model("torchvision:alexnet")


def test_offline_timm_weights_fail_fast_and_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from classcontrast.models import hub

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "reachable", lambda: False)
    with pytest.raises(cc.ClassContrastError, match="weights=PATH"):
        cc.load_model("timm:resnet18")


def test_timm_random_init_has_its_preprocessing() -> None:
    b = cc.load_model("timm:resnet18", weights=None)
    assert b.normalize.mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-3)
    assert b.preprocess(cc.sample_image("coffee")).shape == (3, 224, 224)


@pytest.mark.parametrize(
    ("name", "match"),
    [("nope", "unknown model"), ("torchvision:nope", "unknown torchvision"), ("timm:nope", "unknown timm")],
)
def test_unknown_models(name: str, match: str) -> None:
    with pytest.raises(cc.ClassContrastError, match=match):
        cc.load_model(name, weights=None)


def test_bad_checkpoint_files(tmp_path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(cc.ClassContrastError, match="not a PyTorch checkpoint"):
        cc.load_model("torchvision:resnet18", weights=str(junk))
    with pytest.raises(cc.ClassContrastError, match="not found"):
        cc.load_model("torchvision:resnet18", weights=str(tmp_path / "missing.pth"))


def test_study_preprocessing(embedded: cc.ModelBundle) -> None:
    import copy

    from classcontrast.models import set_preprocess

    b = set_preprocess(copy.copy(embedded), "study-cub")
    assert b.preprocess(cc.sample_image("rocket")).shape == (3, 224, 224)  # squashed, not cropped
    assert set_preprocess(copy.copy(embedded), "study-imagenet").preprocess(cc.sample_image("rocket")).shape == (
        3, 224, 224)
    with pytest.raises(cc.ClassContrastError, match="unknown preprocessing"):
        set_preprocess(copy.copy(embedded), "fancy")


def test_embedded_network_computes_what_timm_computes() -> None:
    """The embedded EfficientNet-Lite0 (written out to spare timm's import) is timm's
    tf_efficientnet_lite0: same state-dict keys and shapes, same logits (float64, odd sizes too)."""
    import timm

    from classcontrast.models.lite0 import EfficientNetLite0
    from tests.reference import randomize_state

    g = torch.Generator().manual_seed(0)
    ref = randomize_state(timm.create_model("tf_efficientnet_lite0", pretrained=False).double().eval(), g)
    ours = EfficientNetLite0().double().eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    ours.load_state_dict(ref.state_dict())
    for h, w in [(224, 224), (97, 131), (33, 40)]:
        x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)


def test_preprocessing_is_torchvisions_pixel_for_pixel() -> None:
    """Our Pillow-only resize/crop/to-tensor (no torchvision import at start-up) equals torchvision's."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T

    from classcontrast.models.preprocess import Preprocess

    rng = np.random.default_rng(0)
    sizes = [(301, 199), (90, 500), (224, 224)]
    images = [cc.sample_image(n) for n in ("chelsea", "rocket")] + [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    for img in images:
        for interp in ("bicubic", "bilinear"):
            mode = T.InterpolationMode(interp)
            ref = T.Compose([T.Resize(256, interpolation=mode), T.CenterCrop(224), T.ToTensor()])(img)
            assert torch.equal(Preprocess(256, 224, interp)(img), ref)
            ref = T.Compose([T.Resize((224, 224), interpolation=mode), T.ToTensor()])(img)
            assert torch.equal(Preprocess((224, 224), None, interp)(img), ref)
        small = T.Compose([T.Resize(100), T.CenterCrop(224), T.ToTensor()])(img)  # crop larger than the image
        assert torch.equal(Preprocess(100, 224)(img), small)


def test_shipped_class_names_are_torchvisions() -> None:
    from classcontrast.models import imagenet_categories

    assert imagenet_categories() == list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
