"""Regions of a semantic segmentation as explained units: a region's map is the sum over its pixels of
each pixel's map (checked by brute force, pixel by pixel, every method kind and contrast), its score the
sum of the pixels' contrasts, from one forward pass; torchvision's ``{"out": ...}`` and Hugging Face's
lower-resolution ``logits`` are understood."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import classcontrast as cc


class TinySeg(nn.Module):
    """Conv features at half resolution, a 1×1 head, logits upsampled back (as FCN / DeepLab do)."""

    def __init__(self, classes: int = 4, dict_output: bool = True, upsample: bool = True) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.Conv2d(6, 8, 3, padding=1, stride=2), nn.ReLU())
        self.classifier = nn.Conv2d(8, classes, 1)
        self.dict_output, self.upsample = dict_output, upsample

    def forward(self, x: torch.Tensor) -> object:
        y = self.classifier(self.backbone(x))
        if self.upsample:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return {"out": y} if self.dict_output else y
        return SimpleNamespace(logits=y)  # Hugging Face style: logits at a lower resolution


class OnePixel(nn.Module):
    """The segmenter as a classifier of one pixel: the brute-force reference."""

    def __init__(self, seg: nn.Module, i: int, j: int) -> None:
        super().__init__()
        self.seg, self.i, self.j = seg, i, j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.seg(x)
        y = out["out"] if isinstance(out, dict) else out
        return y[:, :, self.i, self.j]


@pytest.fixture
def seg() -> nn.Module:
    torch.manual_seed(0)
    net = TinySeg()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.double().eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input", "gradcam", "linear_approx", "integrated_gradients"])
def test_a_region_is_the_sum_of_its_pixels(seg: nn.Module, x: torch.Tensor, method: str) -> None:
    opts = {"layer": "backbone.4"} if method in ("gradcam", "linear_approx") else {}
    opts |= {"steps": 3} if method == "integrated_gradients" else {}
    pixel_opts = {k: f"seg.{v}" if k == "layer" else v for k, v in opts.items()}  # the wrapper's layer name
    contrasts = ["original", "weighted", "max", "probability", cc.Foil(3)]
    with torch.no_grad():
        y = seg(x)["out"]
    rows, cols = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    mask = ((rows + cols) % 2 == 0) & (rows < 4)  # 12 of the 36 pixels, in both images
    region = mask.expand(2, -1, -1)
    ex = cc.explain(seg, x, method, contrasts, cc.Region(1, mask), **opts)
    for key, c in zip(ex, contrasts, strict=True):
        expected_map = torch.zeros_like(ex[key].layer_maps[:, 0])
        expected_score = torch.zeros(2, dtype=torch.float64)
        for i in range(6):
            for j in range(6):
                inside = region[:, i, j]
                if not inside.any():
                    continue
                px = cc.explain(OnePixel(seg, i, j), x, method, c, 1, **pixel_opts)
                expected_map += px.layer_maps[:, 0] * inside[:, None, None]
                expected_score += cc.get_contrast(c).score(y[:, :, i, j], torch.ones(2, dtype=torch.long)) * inside
        torch.testing.assert_close(ex[key].layer_maps[:, 0], expected_map, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(ex[key].scores[:, 0], expected_score, rtol=1e-12, atol=1e-12)
        assert ex[key].units[0][0]["kind"] == "region" and ex[key].units[0][0]["target"] == 1


@pytest.mark.parametrize("method", ["gradient", "gradcam"])
def test_dense_logits_take_their_cotangents_as_they_are(seg: nn.Module, x: torch.Tensor, method: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Logits of a million values and more (a volume's) pass each cotangent to autograd as it is, instead of
    through a product: the same maps as the product's (checked pixel by pixel above)."""
    from classcontrast import backprop

    contrasts = ["original", "weighted", "max", cc.Foil(3)]
    opts = {"layer": "backbone.4"} if method == "gradcam" else {}
    left = torch.zeros(6, 6, dtype=torch.bool)
    left[:, :3] = True
    regions = [cc.Region(1, left), cc.Region(2, ~left)]  # two regions, neither of the foil's class
    before = cc.explain(seg, x, method, contrasts, regions, **opts)
    monkeypatch.setattr(backprop, "_DENSE", 1)
    after = cc.explain(seg, x, method, contrasts, regions, **opts)
    for key in before:
        torch.testing.assert_close(after[key].layer_maps, before[key].layer_maps, rtol=1e-12, atol=1e-14)
        assert (after[key].layer_maps.flatten(2).abs().amax(-1) > 0).all()  # every map of every region


def test_several_regions_masks_and_largest_first(seg: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        y = seg(x)["out"]
    predicted = y.argmax(1)
    ex = cc.explain(seg, x, "gradient", "original", cc.Region.all())
    counts = torch.stack([torch.bincount(p.flatten(), minlength=4) for p in predicted])
    k = ex.targets.shape[1]
    assert k == int((counts > 0).sum(1).max())  # every predicted class of the image with most classes
    assert torch.equal(counts.gather(1, ex.targets), counts.sort(1, descending=True).values[:, :k])  # largest first
    for b in range(2):
        for k, unit in enumerate(ex.units[b]):
            assert torch.equal(unit["mask"], predicted[b] == ex.targets[b, k])
            torch.testing.assert_close(unit["logits"], y[b].permute(1, 2, 0)[unit["mask"]])
    # a user's mask at the output's resolution, and several regions from one call
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:3] = True
    two = cc.explain(seg, x, "gradient", "weighted", [cc.Region(0, mask), cc.Region(2, ~mask)])
    top = cc.explain(seg, x, "gradient", "weighted", cc.Region(0, mask))
    bottom = cc.explain(seg, x, "gradient", "weighted", cc.Region(2, ~mask))
    torch.testing.assert_close(two.maps[:, 0], top.maps[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(two.maps[:, 1], bottom.maps[:, 0], rtol=1e-12, atol=1e-12)
    whole = cc.explain(seg, x, "gradient", "weighted", cc.Region(0, torch.ones(6, 6, dtype=torch.bool)))
    torch.testing.assert_close(whole.maps[:, 0], top.maps[:, 0] + cc.explain(seg, x, "gradient", "weighted",
                               cc.Region(0, ~mask)).maps[:, 0], rtol=1e-10, atol=1e-12)  # regions add up


def test_lower_resolution_logits_are_upsampled_as_the_model_would(seg: nn.Module, x: torch.Tensor) -> None:
    """Hugging Face segmenters return logits at 1/2 or 1/4 of the input: the region is defined on the
    logits upsampled bilinearly to the input, as their post-processing does."""
    low = TinySeg(upsample=False).double().eval()
    low.load_state_dict(seg.state_dict())
    ex_low = cc.explain(low, x, "gradient", ["original", "weighted"], cc.Region.all(1))
    ex_full = cc.explain(seg, x, "gradient", ["original", "weighted"], cc.Region.all(1))
    assert ex_full.targets.tolist() == ex_low.targets.tolist() and ex_full["original"].units[0][0]["pixels"] > 0
    for key in ex_low:
        torch.testing.assert_close(ex_low[key].maps, ex_full[key].maps, rtol=1e-12, atol=1e-12)


def test_regions_need_a_segmenter_and_a_class(tiny: nn.Module, tiny_x: torch.Tensor, seg: nn.Module,
                                              x: torch.Tensor) -> None:
    with pytest.raises(cc.ClassContrastError, match="need a segmentation model"):
        cc.explain(tiny, tiny_x, "gradient", "weighted", cc.Region(1))
    with pytest.raises(cc.ClassContrastError, match="out of range"):
        cc.explain(seg, x, "gradient", "weighted", cc.Region(9))
    with pytest.raises(cc.ClassContrastError, match="boolean tensor"):
        cc.explain(seg, x, "gradient", "weighted", cc.Region(1, torch.ones(6, 6)))
    with pytest.raises(cc.ClassContrastError, match="needs its class"):
        cc.explain(seg, x, "gradient", "weighted", cc.Region())


def test_the_automatic_cam_layer_of_a_segmenter_is_in_its_backbone(seg: nn.Module, x: torch.Tensor) -> None:
    # the backbone's last feature map (the container's output is its last module's), not the class scores
    assert cc.explain(seg, x, "gradcam", "weighted", cc.Region.all(1)).layer in ("backbone", "backbone.4")


@pytest.mark.parametrize("arch", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_torchvision_segmenters(arch: str) -> None:
    """torchvision's FCN, DeepLabV3 and LR-ASPP (random weights, offline; {"out": ...} outputs): every
    region of the top classes, GradCAM on the backbone's last feature map and input gradients."""
    bundle = cc.load_model(f"torchvision:{arch}", weights="none")
    assert bundle.preprocess.crop is None and bundle.categories[0] == "__background__"  # VOC's classes, no crop
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ex = cc.explain(bundle, x, "gradcam", ["original", "weighted", cc.Foil("person")], cc.Region.all(2))
    assert ex["weighted"].layer.startswith("backbone")
    assert ex["weighted"].maps.shape == (1, 2, 64, 64) and ex["foil:person"].units[0][0]["kind"] == "region"
    grad = cc.explain(bundle, x, "gradient", "weighted", cc.Region("aeroplane", torch.ones(64, 64, dtype=torch.bool)))
    assert torch.isfinite(grad.maps).all() and grad.maps.abs().sum() > 0


def test_figures_outline_the_region_and_name_it(seg: nn.Module, x: torch.Tensor) -> None:
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[1:4, 2:5] = True
    ex = cc.explain(seg, x, "gradient", ["original", "weighted"], cc.Region(1, mask))
    fig = cc.plot_explanations(torch.rand(2, 3, 6, 6), dict(ex), ["a", "b", "c", "d"])
    titles = [ax.get_title() for ax in fig.axes]
    assert any("b (region: 25% of pixels)" in t for t in titles)
    maps = [ax for ax in fig.axes if ax.images and len(ax.images) == 2]  # photo + overlay: the map cells
    assert len(maps) == 4 and all(ax.collections for ax in maps)  # an outline on each of 2 images × 2 contrasts


def test_the_command_line_explains_regions(tmp_path) -> None:
    from tests.test_cli import run

    out, npz = tmp_path / "seg.png", tmp_path / "seg.npz"
    argv = ["explain", "--model", "torchvision:lraspp_mobilenet_v3_large", "--weights", "none", "--method", "gradcam",
            "--contrast", "weighted", "--foil", "__background__", "--out", str(out), "--save-maps", str(npz)]
    assert run([*argv, "--top-k", "1"]) == 0  # the largest predicted region
    with np.load(npz) as z:
        assert z["maps/gradcam/weighted"].shape[:2] == (1, 1) and z["maps/gradcam/weighted"].any()
        assert "maps/gradcam/foil:__background__" in z.files
    assert run([*argv, "--region", "persn"]) == 2
    assert run([*argv, "--region", "person", "--target", "person"]) == 2
    bundle = cc.load_model("torchvision:lraspp_mobilenet_v3_large", weights="none")
    with torch.no_grad():
        y = bundle.model(bundle.transform(cc.sample_image("chelsea"))[None])["out"]
    absent = next(c for c in range(len(bundle.categories)) if not (y.argmax(1) == c).any())
    out.unlink()
    assert run([*argv, "--region", bundle.categories[absent]]) == 2  # a region that does not exist
    assert not out.exists()  # one line, before any file is written


def test_a_hugging_face_segformer() -> None:
    """A randomly initialised SegformerForSemanticSegmentation (logits at 1/4 of the input): regions,
    upsampled logits, and GradCAM's automatic layer in the encoder's last stage, not the decode head."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                       hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
                                       num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
                                       num_labels=5)
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(cfg).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ex = cc.explain(model, x, "gradcam", ["original", "weighted"], cc.Region.all(2))
    assert "decode_head" not in ex["weighted"].layer and ex["weighted"].maps.shape == (1, 2, 64, 64)
    with torch.no_grad():
        up = F.interpolate(model(pixel_values=x).logits, size=(64, 64), mode="bilinear", align_corners=False)
    for k, unit in enumerate(ex["original"].units[0]):
        assert torch.equal(unit["mask"], up[0].argmax(0) == ex.targets[0, k])
        torch.testing.assert_close(ex["original"].scores[0, k], up[0, int(ex.targets[0, k])][unit["mask"]].sum())


def test_region_gradcam_equals_pytorch_grad_cams_semantic_segmentation_target(seg: nn.Module) -> None:
    """original = their SemanticSegmentationTarget on the same layer and mask; weighted = their GradCAM
    given the region's weighted objective as a callable target (their ReLU and min-max applied to ours)."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    from tests.test_peer_contrasts import _as_pytorch_grad_cam

    x = torch.randn(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    plain = TinySeg(dict_output=False)
    plain.load_state_dict(seg.state_dict())
    plain = plain.double().eval()
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[3:11, 5:14] = True
    layer = plain.backbone[3]
    for t in range(4):
        ours = cc.explain(plain, x, "gradcam", ["original", "weighted"], cc.Region(t, mask), layer="backbone.3",
                          relu=True)

        def weighted(out: torch.Tensor, t: int = t) -> torch.Tensor:
            others = torch.cat([out[:t], out[t + 1 :]]).logsumexp(0)
            return ((out[t] - others) * mask).sum()

        for key, target in (("original", SemanticSegmentationTarget(t, mask.double().numpy())), ("weighted", weighted)):
            with pgc.GradCAM(plain, [layer]) as cam:
                theirs = cam(x, targets=[target])
            np.testing.assert_allclose(theirs, _as_pytorch_grad_cam(ours[key].layer_maps[:, 0], 16), atol=1e-6)


def test_a_torchvision_segmenters_regions_against_per_class_per_pixel_maps() -> None:
    """LR-ASPP (random weights, float64): a region's map for weighted, mean and a foil equals the
    combination, pixel by pixel, of the gradients of every class at every pixel of the region, each
    computed alone (one backward pass per class and pixel)."""
    bundle = cc.load_model("torchvision:lraspp_mobilenet_v3_large", weights="none")
    model = bundle.model.double()
    try:
        x = torch.randn(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y = model(x)["out"][0]  # (C, H, W)
        mask = torch.zeros(16, 16, dtype=torch.bool)
        pixels = [(3, 4), (3, 5), (9, 11), (12, 2)]
        for i, j in pixels:
            mask[i, j] = True
        t = int(y[:, 3, 4].argmax())
        s = int(y[:, 3, 4].argsort()[-2])
        leaf = x.clone().requires_grad_(True)
        out = model(leaf)["out"][0]
        grads = {(c, p): torch.autograd.grad(out[c, p[0], p[1]], leaf, retain_graph=True)[0][0]
                 for p in pixels for c in range(y.shape[0])}
        want = {"weighted": 0, "mean": 0, f"foil:{bundle.categories[s]}": 0}
        for p in pixels:
            others = [c for c in range(y.shape[0]) if c != t]
            alpha = torch.softmax(y[others, p[0], p[1]], 0)
            want["weighted"] = want["weighted"] + grads[t, p] - sum(a * grads[c, p] for a, c in zip(alpha, others,
                                                                                                   strict=True))
            want["mean"] = want["mean"] + grads[t, p] - sum(grads[c, p] for c in others) / len(others)
            want[f"foil:{bundle.categories[s]}"] = want[f"foil:{bundle.categories[s]}"] + grads[t, p] - grads[s, p]
        ex = cc.explain(model, x, "gradient", ["weighted", "mean", cc.Foil(s)], cc.Region(t, mask), keep_channels=True)
        for key, got in zip(want, ex.values(), strict=True):
            torch.testing.assert_close(got.maps[0, 0], want[key], rtol=1e-8, atol=1e-12)
    finally:
        model.float()
