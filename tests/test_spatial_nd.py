"""Clips, volumes and signals: inputs (B, C, *S) with S of 1 to 3 dimensions. Every method × every contrast, in
float64, equals a slow reference built by autograd of the contrast's own scalar (its ``score``, not the fast
``grad``) — on a torchvision video classifier, MONAI 3-D classifier and segmenter (regions of voxels), and a
1-D signal CNN."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import classcontrast as cc
from classcontrast.methods.integrated import quadrature
from tests.reference import contrast_slow, gradcam_slow, linear_approx_slow, relerr, xgradcam_slow

pytestmark = pytest.mark.filterwarnings("ignore::classcontrast.errors.ClassContrastWarning")
CONTRASTS = ["original", "mean", "max", "weighted", "probability", "foil"]
METHODS = ["gradient", "gradient_x_input", "gradcam", "xgradcam", "linear_approx", "integrated_gradients",
           "smoothgrad", "fullgrad", "lrp"]
OPTIONS = {"integrated_gradients": {"steps": 3}, "smoothgrad": {"samples": 2}}
CAM = {"gradcam": gradcam_slow, "xgradcam": xgradcam_slow, "linear_approx": linear_approx_slow}


def _contrast(kind: str, foil: int) -> object:
    return cc.Foil(foil) if kind == "foil" else kind


def _bias(m: nn.Module) -> Tensor | None:
    if isinstance(m, nn.modules.conv._ConvNd):
        return None if m.bias is None else m.bias.detach()
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
        w = m.weight.detach() if m.weight is not None else torch.ones_like(m.running_mean)
        b = m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_mean)
        return b - m.running_mean * w / torch.sqrt(m.running_var + m.eps)
    return None


def reference(method: str, model: nn.Module, x: Tensor, objective: Callable[[Tensor], Tensor], layer: nn.Module | None,
              explained: cc.Explanation) -> Tensor:
    """One image's map (x: (1, C, *S)) of the scalar ``objective(model output)`` by its definition, autograd."""
    spatial = x.ndim - 2

    def grad_at(inp: Tensor, extra: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        xi = inp.detach().clone().requires_grad_(True)
        store: list[Tensor] = []
        hooks = []
        if extra is not None:  # FullGrad: every biased layer's output, FullGrad's own choice of layers
            for m in model.modules():
                if _bias(m) is not None:
                    hooks.append(m.register_forward_hook(lambda mod, i, o: store.append((mod, o)) or o.clone()))
        try:
            with torch.enable_grad():
                out = objective(model(xi))
                tensors = [xi] + [o for _, o in store if o.ndim == x.ndim]
                grads = torch.autograd.grad(out, tensors, allow_unused=True)
        finally:
            for h in hooks:
                h.remove()
        if extra is not None:
            extra.extend((mod, o.detach(), g) for (mod, o), g in zip([s for s in store if s[1].ndim == x.ndim],
                                                                      grads[1:], strict=True))
        return grads[0], []

    if method in ("gradient", "gradient_x_input"):
        g, _ = grad_at(x)
        return (g if method == "gradient" else g * x).sum(1)[0]
    if method == "integrated_gradients":
        alphas, weights = quadrature("gausslegendre", 3)
        total = torch.zeros_like(x)
        for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
            total += w * grad_at(a * x)[0]
        return (total * x).sum(1)[0]
    if method == "smoothgrad":
        noise = cc.get_method("smoothgrad", samples=2).noise(x, 0)  # the same seeded draws
        return sum(grad_at(x + eps[None])[0] for eps in noise).sum(1)[0] / 2
    if method == "fullgrad":
        layers: list = []
        g, _ = grad_at(x, layers)
        total = (g * x).sum(1)[0]
        for mod, _, gl in layers:
            if gl is None:
                continue
            term = (gl * _bias(mod).reshape(-1, *([1] * spatial))).sum(1, keepdim=True)
            total = total + F.interpolate(term, size=x.shape[2:], mode={1: "linear", 2: "bilinear", 3: "trilinear"}[
                spatial], align_corners=False)[0, 0]
        return total
    if method == "lrp":
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonPlusFlat

        with torch.no_grad():  # the output relevance: the objective's gradient at the output (computed before
            out = model(x)     # zennit's rules are in place: autograd inside them would disturb their state)
        leaf = out.detach().requires_grad_(True)
        with torch.enable_grad():
            cotangent = torch.autograd.grad(objective(leaf), leaf)[0]
        with Gradient(model=model, composite=EpsilonPlusFlat()) as attributor:
            return attributor(x, cotangent)[1].sum(1)[0]
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))  # type: ignore[union-attr]
    try:
        with torch.enable_grad():
            score = objective(model(x.clone().requires_grad_(True)))
            ga = torch.autograd.grad(score, store["a"])[0]
    finally:
        h.remove()
    return CAM[method](store["a"][0].detach(), ga[0])


SAMPLED = ("integrated_gradients", "smoothgrad")  # the contrast is taken at every sampled input


def _classifier_case(model: nn.Module, x: Tensor, layer: str, foil: int = 1) -> None:
    """Methods linear in the back-propagated gradient: every contrast by its definition from per-class maps
    over all classes (`contrast_slow`); the sampling methods: autograd of each contrast's scalar at every
    sampled input."""
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        y = model(x)
    t = y.topk(2, 1).indices
    for method in METHODS:
        ex = cc.explain(model, x, method, [_contrast(k, foil) for k in CONTRASTS], t,
                        **({"layer": layer} if method in CAM else {}), **OPTIONS.get(method, {}),
                        **({"composite": "epsilon_plus_flat", "canonizer": "none"} if method == "lrp" else {}))
        for b in range(x.shape[0]):
            if method not in SAMPLED:
                phi = torch.stack([reference(method, model, x[b : b + 1], lambda out, s=s: out[0, s], module, ex)
                                   for s in range(y.shape[1])])
            for kind, key in zip(CONTRASTS, ex, strict=True):
                c = cc.get_contrast(_contrast(kind, foil))
                for j in range(2):
                    got = ex[key].layer_maps[b, j]
                    if kind == "foil" and t[b, j] == foil:
                        assert got.abs().max() == 0
                        continue
                    if method in SAMPLED:
                        def objective(out: Tensor, b: int = b, j: int = j, c: object = c) -> Tensor:
                            return c.score(out, t[b : b + 1, j]).sum()  # type: ignore[attr-defined]

                        ref = reference(method, model, x[b : b + 1], objective, module, ex[key])
                    else:
                        ref = contrast_slow(phi, y[b], int(t[b, j]), kind, foil)
                    assert relerr(got, ref) < 1e-8, (method, kind, b, j, relerr(got, ref))


def test_a_torchvision_video_classifier_every_method_and_contrast() -> None:
    from torchvision.models.video.resnet import BasicBlock, BasicStem, Conv3DSimple, VideoResNet

    torch.manual_seed(0)  # torchvision's R3D with one block per stage (r3d_18 has two): the same layers, quicker
    model = VideoResNet(BasicBlock, [Conv3DSimple] * 4, [1, 1, 1, 1], BasicStem, num_classes=5).double().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 4, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _classifier_case(model, x, "layer3")
    ex = cc.explain(model, x, "gradcam", "weighted")  # the automatic layer: the last map of more than one position
    assert ex.layer == "layer3" and ex.maps.shape == (1, 1, 4, 16, 16)


def test_a_monai_3d_classifier_every_method_and_contrast() -> None:
    monai = pytest.importorskip("monai")
    torch.manual_seed(0)
    model = monai.networks.nets.DenseNet(spatial_dims=3, in_channels=1, out_channels=4, init_features=4,
                                         growth_rate=4, block_config=(2, 2), bn_size=2).double().eval()
    x = torch.randn(2, 1, 12, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _classifier_case(model, x, "features.denseblock2")


def test_a_1d_signal_cnn_every_method_and_contrast() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(), nn.Conv1d(6, 8, 3, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 4)).double().eval()
    x = torch.randn(2, 2, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _classifier_case(model, x, "3")
    assert cc.explain(model, x, "gradcam").layer == "4"


@pytest.mark.parametrize("dims", [3, 2])
def test_regions_of_voxels_of_a_monai_segmenter_every_method_and_contrast(dims: int) -> None:
    """A region's objective is the sum over its voxels of each voxel's contrast: the reference is autograd of
    that sum; every identity holds voxel by voxel (pixel by pixel for the 2-D UNet, where LRP's relevance once
    differed from zennit's: the per-pixel cotangent was a strided tensor)."""
    monai = pytest.importorskip("monai")
    torch.manual_seed(0)
    model = monai.networks.nets.UNet(spatial_dims=dims, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,),
                                     num_res_units=1).double().eval()
    x = torch.randn(1, 1, *([8] * dims), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model(x)
    predicted = y.argmax(1)
    classes = predicted.flatten().bincount(minlength=3).topk(2).indices.tolist()
    layer = "model.1.submodule"
    module = dict(model.named_modules())[layer]
    for method in METHODS:
        ex = cc.explain(model, x, method, [_contrast(k, 0) for k in CONTRASTS], [cc.Region(c) for c in classes],
                        **({"layer": layer} if method in CAM else {}), **OPTIONS.get(method, {}),
                        **({"composite": "epsilon_plus_flat", "canonizer": "none"} if method == "lrp" else {}))
        for kind, key in zip(CONTRASTS, ex, strict=True):
            c = cc.get_contrast(_contrast(kind, 0))
            for j, cls in enumerate(classes):
                mask = predicted[0] == cls
                assert torch.equal(ex[key].units[0][j]["mask"], mask)

                def objective(out: Tensor, mask: Tensor = mask, cls: int = cls, c: object = c) -> Tensor:
                    pixels = out[0].movedim(0, -1)[mask]
                    return c.score(pixels, torch.full((len(pixels),), cls)).sum()  # type: ignore[attr-defined]

                ref = reference(method, model, x, objective, module, ex[key])
                got = ex[key].layer_maps[0, j]
                if kind == "foil" and cls == 0:
                    assert got.abs().max() == 0
                    continue
                assert relerr(got, ref) < 1e-8, (method, kind, j, relerr(got, ref))
    scores = cc.explain(model, x, "gradient", "weighted", cc.Region(classes[0])).scores
    pixels = y[0].movedim(0, -1)[predicted[0] == classes[0]]
    torch.testing.assert_close(scores[0, 0], cc.get_contrast("weighted").score(
        pixels, torch.full((len(pixels),), classes[0])).sum())


def test_other_3d_monai_segmenters_run_and_stay_finite() -> None:
    monai = pytest.importorskip("monai")
    torch.manual_seed(0)
    nets = [monai.networks.nets.SegResNet(spatial_dims=3, in_channels=1, out_channels=2, init_filters=8,
                                          blocks_down=(1, 1), blocks_up=(1,)),
            monai.networks.nets.SwinUNETR(in_channels=1, out_channels=2, feature_size=12, depths=(1, 1, 1, 1),
                                          num_heads=(1, 1, 1, 1), spatial_dims=3)]
    x = torch.randn(1, 1, 64, 64, 64)  # SwinUNETR halves the volume five times
    for net in nets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cc.ClassContrastWarning)
            ex = cc.explain(net.eval(), x, "gradcam", ["weighted", cc.Foil(0)], cc.Region.all(1))
        assert ex["weighted"].maps.shape == (1, 1, 64, 64, 64) and torch.isfinite(ex["weighted"].maps).all()
        assert ex["weighted"].units[0][0]["kind"] == "region"


def test_vit_methods_say_what_they_need() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    x = torch.randn(1, 1, 6, 6, 6)
    with pytest.raises(cc.ClassContrastError, match="lazy module"):
        cc.explain(model, x, "gradient")
    model(x)  # initialised
    with pytest.raises(cc.ClassContrastError, match="2-D patch grid"):
        cc.explain(model, x, "vit_gradcam")
    with pytest.raises(cc.ClassContrastError, match="blur baseline is for images"):
        cc.explain(model, x, "integrated_gradients", baseline="blur")


class TokensLast(nn.Module):
    """A video transformer's shape habits: a patch-embedding conv (a map), attention whose inner tensors have a
    (B·heads, ...) batch, blocks whose outputs are channels-last (B, T, H, W, C) — none of them a CAM layer."""

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.Conv3d(16, 16, 1)

        def forward(self, x: Tensor) -> Tensor:  # x: (B, T, H, W, 32) -> two heads of 16 channels
            b, t, h, w, c = x.shape
            heads = x.reshape(b, t, h, w, 2, 16).permute(0, 4, 5, 1, 2, 3).reshape(b * 2, 16, t, h, w)
            pooled = self.pool(heads)  # (B·2, 16, T, H, W): five dimensions, not the batch
            return pooled.reshape(b, 2, 16, t, h, w).permute(0, 3, 4, 5, 1, 2).reshape(b, t, h, w, c)

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv3d(3, 32, 2, stride=2)
        self.attention = self.Attention()
        self.norm = nn.LayerNorm(32)  # channels last: (B, T, H, W, 32), wider than the input's 8 × 8
        self.head = nn.Linear(32, 3)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x).permute(0, 2, 3, 4, 1)  # (B, T, H, W, C): channels last
        return self.head(self.norm(self.attention(tokens)).mean((1, 2, 3)))


def test_channels_last_tokens_and_attention_tensors_are_never_the_cam_layer() -> None:
    torch.manual_seed(0)
    model = TokensLast().eval()
    x = torch.randn(2, 3, 4, 8, 8)
    assert cc.explain(model, x, "gradcam", "weighted").layer == "embed"
    with pytest.raises(cc.ClassContrastError, match=r"not the batch of 2"):
        cc.explain(model, x, "gradcam", "weighted", layer="attention.pool")
