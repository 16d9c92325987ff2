"""The gradient-free methods with every contrast: equal to Captum's Occlusion / FeatureAblation / KernelShap /
ShapleyValues and pytorch-grad-cam's ScoreCAM / AblationCAM given the contrast's score; RISE against a slow loop;
completeness identities; every contrast and target from the same perturbed forwards; regions, DETR-style objects,
volumes; the model left as found."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc

from .reference import signed_projection

captum_attr = pytest.importorskip("captum.attr")
pgc = pytest.importorskip("pytorch_grad_cam")

T = torch.tensor([0, 5, 2])
SPECS = {"original": "original", "weighted": "weighted", "foil": cc.Foil(3), "max": "max", "finer": "finer"}
# 9 segments of 4x4 pixels and 4 of 6x6, the same for every image
SEG9 = (torch.arange(12)[:, None] // 4) * 3 + torch.arange(12)[None] // 4
SEG4 = (torch.arange(12)[:, None] // 6) * 2 + torch.arange(12)[None] // 6


def _captum_mask(seg: torch.Tensor) -> torch.Tensor:
    return seg[None, None].expand(1, 3, 12, 12).contiguous()


@pytest.mark.parametrize("contrast", list(SPECS))
@pytest.mark.parametrize(("window", "stride", "baseline"), [((3, 4, 4), (3, 3, 3), 0.0), ((1, 5, 3), (1, 2, 3), 0.5)])
def test_occlusion_equals_captum(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str, window: tuple, stride: tuple,
                                 baseline: float) -> None:
    spec = SPECS[contrast]
    ours = cc.explain(tiny, tiny_x, "occlusion", spec, T, window=window, stride=stride, baseline=baseline,
                      keep_channels=True)
    theirs = captum_attr.Occlusion(cc.ContrastModel(tiny, spec)).attribute(
        tiny_x, sliding_window_shapes=window, strides=stride, baselines=baseline, target=T)
    torch.testing.assert_close(ours.maps[:, 0], theirs.double(), rtol=1e-5, atol=1e-6)  # Captum divides in float32
    summed = cc.explain(tiny, tiny_x, "occlusion", spec, T, window=window, stride=stride, baseline=baseline)
    torch.testing.assert_close(summed.maps, ours.maps.sum(2))


def test_occlusion_integer_window_and_tensor_baseline(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    base = torch.randn(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    ours = cc.explain(tiny, tiny_x, "occlusion", "weighted", T, window=4, stride=2, baseline=base, keep_channels=True)
    theirs = captum_attr.Occlusion(cc.ContrastModel(tiny, "weighted")).attribute(
        tiny_x, sliding_window_shapes=(3, 4, 4), strides=2, baselines=base[None], target=T)
    torch.testing.assert_close(ours.maps[:, 0], theirs.double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("contrast", list(SPECS))
def test_one_window_over_the_whole_input_is_the_drop_to_the_baseline(tiny: nn.Module, tiny_x: torch.Tensor,
                                                                      contrast: str) -> None:
    spec = cc.get_contrast(SPECS[contrast])
    ex = cc.explain(tiny, tiny_x, "occlusion", spec, T, window=(3, 12, 12), baseline=0.25, keep_channels=True)
    drop = spec.score(tiny(tiny_x), T) - spec.score(tiny(torch.full_like(tiny_x, 0.25)), T)
    torch.testing.assert_close(ex.maps[:, 0], drop[:, None, None, None].expand(-1, 3, 12, 12).detach())


@pytest.mark.parametrize("contrast", list(SPECS))
def test_feature_ablation_equals_captum(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str) -> None:
    spec = SPECS[contrast]
    ours = cc.explain(tiny, tiny_x, "feature_ablation", spec, T, segments=SEG9, baseline=-0.5)
    theirs = captum_attr.FeatureAblation(cc.ContrastModel(tiny, spec)).attribute(
        tiny_x, target=T, feature_mask=_captum_mask(SEG9), baselines=-0.5)
    torch.testing.assert_close(ours.maps[:, 0], theirs[:, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("contrast", ["original", "weighted", "foil"])
def test_kernel_shap_equals_captum_on_the_same_samples(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str) -> None:
    """Captum draws its coalitions from torch's global generator; ours from a generator seeded alike, draw for draw.
    The batched call equals per-image calls (each image draws the same coalitions)."""
    spec = SPECS[contrast]
    ours = cc.explain(tiny, tiny_x, "kernel_shap", spec, T, segments=SEG9, samples=60, seed=3)
    for b in range(3):
        torch.manual_seed(3)
        theirs = captum_attr.KernelShap(cc.ContrastModel(tiny, spec)).attribute(
            tiny_x[b:b + 1], target=T[b:b + 1], feature_mask=_captum_mask(SEG9), baselines=0.0, n_samples=60)
        scale = float(theirs.abs().max())  # Captum fits in float32
        torch.testing.assert_close(ours.maps[b, 0], theirs[0, 0].double(), rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("contrast", list(SPECS))
def test_exact_shapley_values_equal_captums_and_add_up(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str) -> None:
    """4 segments, 16 coalitions <= samples: every coalition scored, the exact Shapley values — Captum's ShapleyValues
    (all permutations) — summing to O(x) − O(baseline) for every contrast."""
    spec = cc.get_contrast(SPECS[contrast])
    ours = cc.explain(tiny, tiny_x, "kernel_shap", spec, T, segments=SEG4, samples=16, baseline=0.1)
    theirs = captum_attr.ShapleyValues(cc.ContrastModel(tiny, spec)).attribute(
        tiny_x, target=T, feature_mask=_captum_mask(SEG4), baselines=0.1)
    torch.testing.assert_close(ours.maps[:, 0], theirs[:, 0].double(), rtol=1e-5, atol=1e-7)
    per_segment = ours.maps[:, 0, ::6, ::6].flatten(1)  # one pixel of each segment
    drop = spec.score(tiny(tiny_x), T) - spec.score(tiny(torch.full_like(tiny_x, 0.1)), T)
    torch.testing.assert_close(per_segment.sum(1), drop.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("contrast", ["original", "weighted", "foil"])
def test_rise_equals_a_slow_loop_over_its_masks(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str) -> None:
    """The original (centred=False) and the centred RISE (the default: each mask's score minus the mean score over
    the masks) against a loop over the masks."""
    spec = cc.get_contrast(SPECS[contrast])
    method = cc.methods.RISE(samples=40, cells=3, keep=0.4, seed=7, internal_batch_size=7)
    ex = cc.explain(tiny, tiny_x, method, spec, T)
    original = cc.explain(tiny, tiny_x, cc.methods.RISE(samples=40, cells=3, keep=0.4, seed=7, centred=False), spec, T)
    masks = method.masks(torch.arange(40), (12, 12), tiny_x)
    assert masks.shape == (40, 12, 12) and float(masks.min()) >= 0 and float(masks.max()) <= 1
    with torch.no_grad():
        scores = [spec.score(tiny(tiny_x * masks[n]), T) for n in range(40)]
    mean = sum(scores) / 40
    want = sum(s[:, None, None] * masks[n] for n, s in enumerate(scores)) / (40 * 0.4)
    centred = sum((s - mean)[:, None, None] * masks[n] for n, s in enumerate(scores)) / (40 * 0.4)
    torch.testing.assert_close(original.maps[:, 0], want)
    torch.testing.assert_close(ex.maps[:, 0], centred)
    # the centred map is the original less the mean score times the masks' coverage
    torch.testing.assert_close(ex.maps[:, 0], want - mean[:, None, None] * masks.sum(0) / (40 * 0.4))
    again = cc.explain(tiny, tiny_x[1:2], cc.methods.RISE(samples=40, cells=3, keep=0.4, seed=7), spec, T[1:2])
    torch.testing.assert_close(again.maps[0], ex.maps[1])  # seeded: the same masks for every image and call


def _minmax(m: np.ndarray) -> np.ndarray:
    m = m - m.min(axis=(-2, -1), keepdims=True)
    return m / (1e-7 + m.max(axis=(-2, -1), keepdims=True))


@pytest.mark.parametrize("contrast", ["original", "weighted", "foil"])
@pytest.mark.parametrize("smooth", [None, "eigen_smooth", "aug_smooth"])
@pytest.mark.parametrize(("ours", "theirs"), [("scorecam", "ScoreCAM"), ("ablationcam", "AblationCAM")])
def test_score_cams_equal_pytorch_grad_cam(tiny: nn.Module, monkeypatch: pytest.MonkeyPatch, ours: str, theirs: str,
                                           smooth: str | None, contrast: str) -> None:
    """Their map is ReLU, min-max, ReLU, min-max of ours (an input-sized layer); ``eigen_smooth``: their projection
    of the terms w_k A^k, signed as ours; ``aug_smooth``: their test-time augmentation with its per-input min-max
    left out, the mean of our ReLU'd maps of the flipped and scaled inputs, flipped back."""
    monkeypatch.setattr(pgc.base_cam, "get_2d_projection", signed_projection)
    if smooth == "aug_smooth":
        monkeypatch.setattr(pgc.base_cam, "scale_cam_image", lambda cam, target_size=None: cam)
    model = tiny.float()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    target = {"original": cc.targets.Original, "weighted": cc.targets.Weighted,
              "foil": lambda t: cc.targets.FoilTarget(t, 3)}[contrast]
    option = {smooth: True} if smooth else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with getattr(pgc, theirs)(model=model, target_layers=[model.features[2]]) as cam:
            expected = cam(input_tensor=x, targets=[target(t) for t in (1, 4)], **option)
    spec = cc.Foil(3) if contrast == "foil" else contrast
    got = cc.explain(model, x, ours, spec, [1, 4], layer="features.2", relu=True, **option).maps[:, 0].numpy()
    if smooth == "aug_smooth":
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
        plain = cc.explain(model, x, ours, spec, [1, 4], layer="features.2", relu=True).maps[:, 0].numpy()
        assert np.abs(plain - expected).max() > 1e-3 * np.abs(expected).max()  # the option changes the map
    else:
        np.testing.assert_allclose(_minmax(_minmax(got)), expected, atol=1e-4)
        assert float(np.abs(expected).max()) > 0.5


def test_ablationcam_weights_by_hand(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    """w_k = (O − O_k)/O with channel k of the layer set to 0 (the layer follows a ReLU), signed, float64."""
    spec = cc.get_contrast("weighted")
    ex = cc.explain(tiny, tiny_x, "ablationcam", spec, T, layer="features.2")
    acts: list[torch.Tensor] = []
    h = tiny.features[2].register_forward_hook(lambda m, i, o: acts.append(o))
    with torch.no_grad():
        clean = spec.score(tiny(tiny_x), T)
    h.remove()
    a = acts[0]
    want = torch.zeros_like(a[:, 0])
    for k in range(a.shape[1]):
        def ablate(m: nn.Module, i: object, o: torch.Tensor, k: int = k) -> torch.Tensor:
            o = o.clone()
            o[:, k] = 0
            return o
        h = tiny.features[2].register_forward_hook(ablate)
        with torch.no_grad():
            score = spec.score(tiny(tiny_x), T)
        h.remove()
        want += ((clean - score) / clean)[:, None, None] * a[:, k]
    torch.testing.assert_close(ex.layer_maps[:, 0], want)


class _Counter:
    def __init__(self, model: nn.Module) -> None:
        self.rows = 0
        self.calls = 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        self.calls += 1
        self.rows += args[0].shape[0]


@pytest.mark.parametrize(("method", "opts"), [("occlusion", {"window": 6, "stride": 3}), ("rise", {"samples": 20}),
                                              ("feature_ablation", {"segments": SEG9}),
                                              ("kernel_shap", {"segments": SEG9, "samples": 30}),
                                              ("scorecam", {"layer": "features.3"})])
def test_twelve_maps_cost_the_forwards_of_one(tiny: nn.Module, tiny_x: torch.Tensor, method: str, opts: dict) -> None:
    """3 targets x 4 contrasts in one call run exactly the forwards (and rows) of one target and one contrast, and
    each of the 12 maps equals the map asked for alone."""
    count = _Counter(tiny)
    one = cc.explain(tiny, tiny_x, method, "original", T, **opts)
    single = (count.calls, count.rows)
    count.calls = count.rows = 0
    targets = torch.tensor([[0, 1, 2], [5, 4, 3], [2, 6, 0]])
    contrasts = ["original", "weighted", "max", cc.Foil(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)  # a foil equal to a target
        many = cc.explain(tiny, tiny_x, method, contrasts, targets, **opts)
    count.handle.remove()
    assert (count.calls, count.rows) == single
    torch.testing.assert_close(many["original"].maps[:, :1], one.maps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cc.ClassContrastWarning)
        alone = cc.explain(tiny, tiny_x, method, cc.Foil(4), targets[:, 1], **opts)
    torch.testing.assert_close(many["foil:4"].maps[:, 1:2], alone.maps)


def test_a_perturbed_input_is_scored_by_its_own_runner_up(tiny_x: torch.Tensor) -> None:
    """max's runner-up is chosen again on each perturbed input (as Captum's forward of the contrast's score), while
    the target stays the image's: occlusion over the whole input equals max(x) − max(baseline) of the same target."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 7)).double().eval()
    spec = cc.get_contrast("max")
    base = torch.randn(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    ex = cc.explain(net, tiny_x, "occlusion", spec, T, window=(3, 12, 12), baseline=base, keep_channels=True)
    with torch.no_grad():
        y0, y1 = net(tiny_x), net(base[None].expand_as(tiny_x))
    runner_up = y1.scatter(1, T[:, None], float("-inf")).argmax(1)
    assert (runner_up != y0.scatter(1, T[:, None], float("-inf")).argmax(1)).any()  # the runner-up changed
    want = spec.score(y0, T) - (y1.gather(1, T[:, None])[:, 0] - y1.gather(1, runner_up[:, None])[:, 0])
    torch.testing.assert_close(ex.maps[:, 0, 0, 0, 0], want)


def test_regions_of_a_segmenter_by_occlusion_equal_a_loop() -> None:
    from tests.test_regions import TinySeg

    torch.manual_seed(0)
    seg = TinySeg().double().eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ex = cc.explain(seg, x, "occlusion", ["original", "weighted"], cc.Region(1), window=(3, 2, 2), stride=2,
                    keep_channels=True)
    mask = ex["original"].units
    for key, spec in (("original", cc.Original()), ("weighted", cc.Weighted())):
        want = torch.zeros(2, 3, 6, 6, dtype=torch.float64)
        for b in range(2):
            region = mask[b][0]["mask"]

            def objective(inp: torch.Tensor, region: torch.Tensor = region, spec: cc.Contrast = spec) -> torch.Tensor:
                y = seg(inp)["out"][0].flatten(1).T[region.flatten()]
                return spec.score(y, torch.full((len(y),), 1)).sum()

            with torch.no_grad():
                clean = objective(x[b:b + 1])
                for i in range(0, 6, 2):
                    for j in range(0, 6, 2):
                        occluded = x[b:b + 1].clone()
                        occluded[..., i:i + 2, j:j + 2] = 0
                        want[b, :, i:i + 2, j:j + 2] = clean - objective(occluded)
        torch.testing.assert_close(ex[key].maps[:, 0], want)


class _FollowedObject(nn.Module):
    """The slow reference for a torchvision detector's object under perturbation, one input at a time: run the
    detector, decode every proposal's box for the object's label (clipped, in input pixels), and return the class
    logits of the proposal overlapping the object's box best (RetinaNet: the anchor's row, fixed)."""

    def __init__(self, model: nn.Module, box: list[float], label: int, anchor: int | None = None) -> None:
        super().__init__()
        self.detector, self.label, self.anchor = model, label, anchor
        self.box = torch.tensor([box], dtype=torch.float64)

    def _heads(self, one: torch.Tensor) -> dict:
        got: dict = {}
        if self.anchor is not None:
            hooks = [self.detector.head.register_forward_hook(lambda m, i, o: got.update(o))]
        else:
            heads = self.detector.roi_heads
            hooks = [heads.box_predictor.register_forward_hook(lambda m, i, o: got.update(logits=o[0], reg=o[1])),
                     heads.register_forward_pre_hook(lambda m, a: got.update(proposals=a[1][0], size=a[2][0]))]
        try:
            self.detector(one[None])
        finally:
            for h in hooks:
                h.remove()
        return got

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.models.detection.transform import resize_boxes
        from torchvision.ops import box_iou, clip_boxes_to_image

        rows = []
        for one in x:
            got = self._heads(one)
            if self.anchor is not None:
                rows.append(got["cls_logits"][0, self.anchor])
                continue
            coder = self.detector.roi_heads.box_coder
            boxes = coder.decode(got["reg"], [got["proposals"]]).reshape(len(got["reg"]), -1, 4)
            boxes = resize_boxes(clip_boxes_to_image(boxes[:, self.label], got["size"]), got["size"], one.shape[-2:])
            rows.append(got["logits"][box_iou(self.box, boxes)[0].argmax()])
        return torch.stack(rows)


@pytest.mark.parametrize("arch", ["fasterrcnn", "retinanet"])
def test_torchvision_detectors_follow_each_object_through_the_perturbations(arch: str) -> None:
    """A perturbation method scores each object of a torchvision detector by its own row in each perturbed forward:
    Faster R-CNN's proposal whose box for the object's label overlaps the object's box best, RetinaNet's location.
    Equal to Captum's Occlusion on the slow reference; a window over the whole image is the drop to the baseline."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    build = {"fasterrcnn": "fasterrcnn_resnet50_fpn", "retinanet": "retinanet_resnet50_fpn"}[arch]
    # ResNet-50 rather than the mobilenet used elsewhere: a random mobilenet's features barely depend on the input
    model = getattr(torchvision.models.detection, build)(weights=None, weights_backbone=None, num_classes=5,
                                                         min_size=64, max_size=64).double().eval()
    with torch.no_grad():  # a random head detects nothing: make class 2 detectable
        if arch == "fasterrcnn":
            model.roi_heads.box_predictor.cls_score.bias[2] = 3.0
        else:
            model.head.classification_head.cls_logits.bias[2] = 3.0
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    contrasts = ["max", cc.Foil(0)]
    ex = cc.explain(model, x, "occlusion", contrasts, cc.Detections(top=2), window=32, stride=32)
    whole = cc.explain(model, x, "occlusion", contrasts, cc.Detections(top=2), window=64, baseline=0.5)
    for key, spec in zip(ex, contrasts, strict=True):
        for j, u in enumerate(ex[key].units[0]):
            ref = _FollowedObject(model, u["box"], u["label"], u.get("proposal") if arch == "retinanet" else None)
            target = torch.tensor([u["target"]])
            theirs = captum_attr.Occlusion(cc.ContrastModel(ref, spec)).attribute(
                x, sliding_window_shapes=(3, 32, 32), strides=(3, 32, 32), target=target)
            # Captum returns float32
            torch.testing.assert_close(ex[key].maps[0, j], theirs[0].double().sum(0), rtol=1e-5, atol=1e-6)
            with torch.no_grad():
                drop = cc.ContrastModel(ref, spec)(x)[0, u["target"]] - \
                    cc.ContrastModel(ref, spec)(torch.full_like(x, 0.5))[0, u["target"]]
            # one window over all three channels: each channel's map is the drop, summed over the channels
            torch.testing.assert_close(whole[key].maps[0, j], 3 * drop.expand(64, 64), rtol=1e-7, atol=1e-9)


def test_volumes_by_occlusion_and_rise() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                        nn.Linear(4, 3)).double().eval()
    x = torch.randn(2, 1, 4, 6, 6, dtype=torch.float64)
    ex = cc.explain(net, x, "occlusion", "weighted", [0, 2], window=2, stride=2)
    spec = cc.Weighted()
    t = torch.tensor([0, 2])
    want = torch.zeros(2, 4, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        clean = spec.score(net(x), t)
        for d in range(0, 4, 2):
            for i in range(0, 6, 2):
                for j in range(0, 6, 2):
                    o = x.clone()
                    o[..., d:d + 2, i:i + 2, j:j + 2] = 0
                    want[:, d:d + 2, i:i + 2, j:j + 2] = (clean - spec.score(net(o), t))[:, None, None, None]
    torch.testing.assert_close(ex.maps[:, 0], want)
    assert cc.explain(net, x, "rise", "weighted", [0, 2], samples=8).maps.shape == (2, 1, 4, 6, 6)


@pytest.mark.parametrize("method", ["ablationcam", "scorecam", "occlusion"])
def test_the_model_is_left_as_found_even_when_a_call_fails(tiny: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    tiny.features[0].weight.requires_grad_(False)
    cc.explain(tiny, tiny_x, method, ["weighted", "original"], T, **({"window": 6} if method == "occlusion" else {}))
    with pytest.raises(cc.ClassContrastError):
        cc.explain(tiny, tiny_x, method, "weighted", [0, 1, 99])
    assert not tiny.training and not tiny.features[0].weight.requires_grad and tiny.fc.weight.requires_grad
    for name, m in tiny.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks, name
    assert all(p.grad is None for p in tiny.parameters())


def test_bad_options_are_one_line(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    for opts, match in (({"window": 20}, "larger than the input"), ({"window": (2, 2, 2, 2)}, "window must be"),
                        ({"baseline": "grey"}, "baseline must be a finite number"),
                        ({"stride": 0}, "stride must be")):
        with pytest.raises(cc.ClassContrastError, match=match):
            cc.explain(tiny, tiny_x, "occlusion", "weighted", **opts)
    with pytest.raises(cc.ClassContrastError, match="segments must be an integer tensor"):
        cc.explain(tiny, tiny_x, "feature_ablation", "weighted", segments=torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(cc.ClassContrastError, match="keep"):
        cc.explain(tiny, tiny_x, "rise", "weighted", keep=0)
