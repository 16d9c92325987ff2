"""Second hostile review, wrong answers about *which layer*: the automatic CAM layer is exactly the documented
rule on every architecture and every call — at two input sizes, in both orders, in one process (it was
cached per model from the first call's size, and on VGG pooled outputs were remembered by the ``id`` of
freed tensors, whose ids are reused). The rule also leaves out channels-last tensors (ConvNeXt's blocks
permute to (B, H, W, C): at 32 px one was taken for a map), attention's inner tensors and the model's own
output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import classcontrast as cc
from classcontrast.layers import default_feature_layer

POOLING = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
           nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)


def reference_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The rule of `default_feature_layer`'s docstring, slowly: keep every module's output (no id reuse), mark
    which depend on the image by differentiating to it, then take the last qualifying module."""
    outputs: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: outputs.append((n, mod, o)))
               for n, m in model.named_modules() if n]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        image = x[:1].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model.eval()(image)
            out = getattr(out, "logits", out)
    finally:
        for h in handles:
            h.remove()
        for p, f in flags:
            p.requires_grad_(f)
    final = [v for v in (out if isinstance(out, tuple) else (out,)) if isinstance(v, torch.Tensor)]
    pooled = [o for _, m, o in outputs if isinstance(o, torch.Tensor)
              and (isinstance(m, POOLING) or "pool" in type(m).__name__.lower())]
    attention = [n for n, m in model.named_modules() if n and (isinstance(m, nn.MultiheadAttention)
                                                               or "attention" in type(m).__name__.lower())]
    names = []
    for n, m, o in outputs:
        if not isinstance(o, torch.Tensor) or o.ndim != 4 or o.shape[-1] * o.shape[-2] <= 1 or o.shape[0] != 1:
            continue
        if o.shape[-2] > x.shape[-2] or o.shape[-1] > x.shape[-1]:  # channels last (B, H, W, C): not a map
            continue
        if any(n.startswith(a + ".") for a in attention):
            continue
        if isinstance(m, (nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten)) or not o.requires_grad:
            continue
        if any(o is p for p in pooled) or any(o is f for f in final):
            continue
        names.append(n)
    for part in ("backbone", "encoder"):
        inside = [n for n in names if n == part or n.startswith(part + ".") or f".{part}." in f".{n}."]
        if inside:
            body = [n for n in inside if n.startswith(part + ".body.")]
            return (body or inside)[-1]
    heads = {"decode_head", "auxiliary_head", "segmentation_head", "aux_classifier"}
    return ([n for n in names if not set(n.split(".")) & heads] or names)[-1]


def _torchvision(arch: str) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(arch, weights=None).eval()


def _timm(arch: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=10).eval()


def _hf(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "resnet":
        cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                                        num_labels=5)
        return transformers.ResNetForImageClassification(cfg).eval()
    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1], num_labels=5)
    return transformers.ConvNextForImageClassification(cfg).eval()


MODELS = {
    "torchvision:vgg16": lambda: _torchvision("vgg16"),
    "torchvision:resnet18": lambda: _torchvision("resnet18"),
    "torchvision:mobilenet_v3_small": lambda: _torchvision("mobilenet_v3_small"),
    "torchvision:densenet121": lambda: _torchvision("densenet121"),
    "torchvision:efficientnet_b0": lambda: _torchvision("efficientnet_b0"),
    "torchvision:convnext_tiny": lambda: _torchvision("convnext_tiny"),
    "timm:resnet18": lambda: _timm("resnet18"),
    "timm:efficientnet_b0": lambda: _timm("efficientnet_b0"),
    "timm:vgg11": lambda: _timm("vgg11"),
    "hf:resnet": lambda: _hf("resnet"),
    "hf:convnext": lambda: _hf("convnext"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_the_automatic_layer_is_the_documented_rule_at_every_size_in_every_order(name: str) -> None:
    model = MODELS[name]()
    small, large = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 128, 128)
    want = {32: reference_layer(model, small), 128: reference_layer(model, large)}
    for x in (small, large, small, large):  # both orders, twice, one process
        assert default_feature_layer(model, x) == want[x.shape[-1]], (name, x.shape)
    if name == "torchvision:vgg16":  # the documented answer (the last ReLU before the last max pooling)
        assert want == {32: "features.29", 128: "features.29"}


def test_a_large_image_after_a_small_one_gets_a_map_that_varies(tiny_x: torch.Tensor) -> None:
    """The case reported: a deeper layer chosen at one size and reused at a size where it is 1×1 gave a
    constant map; a shallower layer reused at a larger size gave another answer than a lone call."""
    model = _torchvision("resnet18")
    small, large = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 96, 96)
    lone = cc.explain(_torchvision("resnet18"), large, "gradcam", "original", targets=0)
    cc.explain(model, small, "gradcam", "original", targets=0)
    after = cc.explain(model, large, "gradcam", "original", targets=0)
    assert after.layer == lone.layer == "layer4"
    torch.testing.assert_close(after.maps, lone.maps)
    model2 = _torchvision("resnet18")
    cc.explain(model2, large, "gradcam", "original", targets=0)
    small_after = cc.explain(model2, small, "gradcam", "original", targets=0)
    assert small_after.layer_maps.shape[-1] * small_after.layer_maps.shape[-2] > 1
    assert small_after.maps.std() > 0


def test_a_replaced_block_is_a_new_answer() -> None:
    model = _torchvision("resnet18")
    x = torch.randn(1, 3, 64, 64)
    assert default_feature_layer(model, x) == "layer4"
    model.layer4 = nn.Sequential(nn.Conv2d(256, 512, 3, stride=2, padding=1), nn.AdaptiveMaxPool2d(1))
    assert default_feature_layer(model, x) == reference_layer(model, x) == "layer4.0"
