"""The methods users know, against the peers that define them: pytorch-grad-cam's GradCAM++, LayerCAM, HiResCAM and
Captum's GuidedBackprop / GuidedGradCam, for the original objective and our contrasts passed to them (callable
targets, a model whose column t is the contrast's score) — and against slow per-objective references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc

from .reference import signed_projection

pgc = pytest.importorskip("pytorch_grad_cam")
captum_attr = pytest.importorskip("captum.attr")

TARGETS = [1, 4]
FOIL = 6
# our contrast, the pytorch-grad-cam target for class t, the Captum model whose column t is the contrast's score
CONTRASTS = {
    "original": (cc.targets.Original, "original"),
    "weighted": (cc.targets.Weighted, "weighted"),
    "foil": (lambda t: cc.targets.FoilTarget(t, FOIL), cc.Foil(FOIL)),
}


@pytest.fixture
def model32(tiny: nn.Module) -> nn.Module:
    return tiny.float()


@pytest.fixture
def x32() -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))


def _minmax(m: np.ndarray) -> np.ndarray:
    m = m - m.min(axis=(-2, -1), keepdims=True)
    return m / (1e-7 + m.max(axis=(-2, -1), keepdims=True))


@pytest.mark.parametrize("contrast", list(CONTRASTS))
@pytest.mark.parametrize(("ours", "theirs"), [("gradcam_plus_plus", "GradCAMPlusPlus"), ("layercam", "LayerCAM"),
                                              ("hirescam", "HiResCAM")])
def test_gradient_cams_equal_pytorch_grad_cam(model32: nn.Module, x32: torch.Tensor, ours: str, theirs: str,
                                              contrast: str) -> None:
    """The layer (features.2: stride 1) is at the input's size, so pytorch-grad-cam's resize is the identity: its
    map is ReLU, min-max, ReLU, min-max of the CAM — ours with relu=True, min-maxed twice."""
    target, spec = CONTRASTS[contrast]
    with getattr(pgc, theirs)(model=model32, target_layers=[model32.features[2]]) as cam:
        expected = cam(input_tensor=x32, targets=[target(t) for t in TARGETS])
    ex = cc.explain(model32, x32, ours, spec, TARGETS, layer="features.2", relu=True)
    got = _minmax(_minmax(ex.maps[:, 0].numpy()))
    np.testing.assert_allclose(got, expected, atol=5e-4)


@pytest.mark.parametrize("contrast", list(CONTRASTS))
@pytest.mark.parametrize(("ours", "theirs"), [("gradcam", "GradCAM"), ("gradcam_plus_plus", "GradCAMPlusPlus"),
                                              ("layercam", "LayerCAM"), ("hirescam", "HiResCAM")])
def test_eigen_smooth_equals_pytorch_grad_cams(model32: nn.Module, x32: torch.Tensor, monkeypatch: pytest.MonkeyPatch,
                                               ours: str, theirs: str, contrast: str) -> None:
    """``eigen_smooth``: the first principal component of the CAM's per-channel terms, pytorch-grad-cam's projection
    with the sign fixed as ours; at an input-sized layer, its map is ours ReLU'd and min-maxed twice."""
    for module in (pgc.base_cam, pgc.layer_cam, pgc.hirescam):
        monkeypatch.setattr(module, "get_2d_projection", signed_projection)
    target, spec = CONTRASTS[contrast]
    with getattr(pgc, theirs)(model=model32, target_layers=[model32.features[2]]) as cam:
        expected = cam(input_tensor=x32, targets=[target(t) for t in TARGETS], eigen_smooth=True)
    ex = cc.explain(model32, x32, ours, spec, TARGETS, layer="features.2", relu=True, eigen_smooth=True)
    np.testing.assert_allclose(_minmax(_minmax(ex.maps[:, 0].numpy())), expected, atol=5e-4)
    plain = cc.explain(model32, x32, ours, spec, TARGETS, layer="features.2", relu=True)
    assert np.abs(_minmax(plain.maps[:, 0].numpy()) - expected).max() > 1e-2  # the option changes the map


@pytest.mark.parametrize("contrast", list(CONTRASTS))
@pytest.mark.parametrize(("ours", "theirs", "eigen"), [("gradcam", "GradCAM", False), ("layercam", "LayerCAM", False),
                                                       ("gradcam", "GradCAM", True)])
def test_aug_smooth_equals_pytorch_grad_cams(model32: nn.Module, x32: torch.Tensor, monkeypatch: pytest.MonkeyPatch,
                                             ours: str, theirs: str, eigen: bool, contrast: str) -> None:
    """``aug_smooth``: pytorch-grad-cam's test-time augmentation (flips × 0.9, 1, 1.1) with its per-input min-max
    scaling left out (an input-sized layer: no resize) — the mean of the ReLU'd maps, flipped back, is ours."""
    monkeypatch.setattr(pgc.base_cam, "scale_cam_image", lambda cam, target_size=None: cam)
    for module in (pgc.base_cam, pgc.layer_cam):
        monkeypatch.setattr(module, "get_2d_projection", signed_projection)
    target, spec = CONTRASTS[contrast]
    with getattr(pgc, theirs)(model=model32, target_layers=[model32.features[2]]) as cam:
        expected = cam(input_tensor=x32, targets=[target(t) for t in TARGETS], aug_smooth=True, eigen_smooth=eigen)
    ex = cc.explain(model32, x32, ours, spec, TARGETS, layer="features.2", relu=True, aug_smooth=True,
                    eigen_smooth=eigen)
    np.testing.assert_allclose(ex.maps[:, 0].numpy(), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "layercam"])
def test_aug_smooth_is_the_mean_over_augmented_inputs_for_every_contrast(tiny: nn.Module, tiny_x: torch.Tensor,
                                                                        method: str) -> None:
    """Signed, float64, at a stride-2 layer: each contrast's map is the mean of six calls on the flipped and scaled
    images (targets given: the images'), each flipped back; a linear CAM shares the passes across contrasts."""
    contrasts = ["original", "mean", "max", "weighted", "probability", cc.Foil(3)]
    targets = [0, 5, 2]
    got = cc.explain(tiny, tiny_x, method, contrasts, targets, layer="features.3", aug_smooth=True)
    for contrast in contrasts:
        maps = []
        for flip in (False, True):
            for f in (0.9, 1.0, 1.1):
                m = cc.explain(tiny, (tiny_x.flip(-1) if flip else tiny_x) * f, method, contrast, targets,
                               layer="features.3").layer_maps[:, 0]
                maps.append(m.flip(-1) if flip else m)
        want = torch.stack(maps).mean(0)
        torch.testing.assert_close(got[contrast].layer_maps[:, 0], want, rtol=1e-9, atol=1e-12)
    assert cc.METHODS[method](aug_smooth=True).linear == (method != "layercam")
    assert not cc.METHODS[method](eigen_smooth=True).linear


def _cam_reference(model: nn.Module, x: torch.Tensor, contrast: cc.Contrast, targets: list[int], formula: str
                   ) -> torch.Tensor:
    """One autograd.grad per image for the layer's gradient, the published formula written out loop by loop."""
    store: list[torch.Tensor] = []
    handle = model.features[3].register_forward_hook(lambda m, i, o: store.append(o))
    try:
        out = []
        for b, t in enumerate(targets):
            store.clear()
            y = model(x[b:b + 1])
            a = store[0]
            (g,) = torch.autograd.grad(contrast.score(y, torch.tensor([t]))[0], a)
            a, g = a[0].detach(), g[0]
            if formula == "gradcam_plus_plus":
                w = torch.zeros(a.shape[0], dtype=a.dtype)
                for k in range(a.shape[0]):
                    for i in range(a.shape[1]):
                        for j in range(a.shape[2]):
                            gk = g[k, i, j]
                            if gk != 0:
                                alpha = gk**2 / (2 * gk**2 + a[k].sum() * gk**3 + 1e-6)
                                w[k] += alpha * torch.relu(gk)
                out.append((w[:, None, None] * a).sum(0))
            elif formula == "layercam":
                out.append((torch.relu(g) * a).sum(0))
            else:
                out.append((g * a).sum(0))
        return torch.stack(out)
    finally:
        handle.remove()


@pytest.mark.parametrize("contrast", ["mean", "max", "probability", "weighted"])
@pytest.mark.parametrize("method", ["gradcam_plus_plus", "layercam", "hirescam"])
def test_gradient_cams_equal_a_slow_reference_for_every_contrast(tiny: nn.Module, tiny_x: torch.Tensor,
                                                                 method: str, contrast: str) -> None:
    """Signed maps at a stride-2 layer in float64, every contrast, several targets in one call."""
    targets = [0, 5, 2]
    ex = cc.explain(tiny, tiny_x, method, contrast, targets, layer="features.3")
    ref = _cam_reference(tiny, tiny_x, cc.get_contrast(contrast), targets, method)
    torch.testing.assert_close(ex.layer_maps[:, 0], ref, rtol=1e-9, atol=1e-12)


def test_hirescam_is_linear_approx_and_not_gradcam_plus_plus(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    hi = cc.explain(tiny, tiny_x, "hirescam", "weighted", layer="features.3")
    la = cc.explain(tiny, tiny_x, "linear_approx", "weighted", layer="features.3")
    torch.testing.assert_close(hi.maps, la.maps)
    pp = cc.explain(tiny, tiny_x, "gradcam_plus_plus", "probability", layer="features.3")
    w = cc.explain(tiny, tiny_x, "gradcam_plus_plus", "weighted", layer="features.3")
    p = torch.softmax(tiny(tiny_x), 1).gather(1, w.targets)[..., None, None]
    # not linear in the gradient: probability is not p(1-p) times weighted (it is for GradCAM)
    assert not torch.allclose(pp.layer_maps, p * (1 - p) * w.layer_maps, rtol=1e-3)


@pytest.mark.parametrize("contrast", list(CONTRASTS))
def test_guided_backprop_equals_captum(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str) -> None:
    spec = CONTRASTS[contrast][1]
    targets = torch.tensor([0, 5, 2])
    wrapped = cc.ContrastModel(tiny, spec)
    theirs = captum_attr.GuidedBackprop(wrapped).attribute(tiny_x.clone().requires_grad_(True), target=targets)
    ours = cc.explain(tiny, tiny_x, "guided_backprop", spec, targets, keep_channels=True)
    torch.testing.assert_close(ours.maps[:, 0], theirs, rtol=1e-9, atol=1e-12)
    plain = cc.explain(tiny, tiny_x, "gradient", spec, targets, keep_channels=True)
    assert not torch.allclose(plain.maps, ours.maps)  # the rectified ReLUs changed the gradient
    for name, m in tiny.named_modules():  # no hook left behind
        assert not m._forward_hooks and not m._backward_hooks, name


@pytest.mark.parametrize("contrast", list(CONTRASTS))
def test_guided_gradcam_equals_captum(tiny: nn.Module, tiny_x: torch.Tensor, contrast: str) -> None:
    spec = CONTRASTS[contrast][1]
    targets = torch.tensor([3, 1, 5])
    wrapped = cc.ContrastModel(tiny, spec)
    theirs = captum_attr.GuidedGradCam(wrapped, tiny.features[3]).attribute(
        tiny_x.clone().requires_grad_(True), target=targets, interpolate_mode="bilinear")
    ours = cc.explain(tiny, tiny_x, "guided_gradcam", spec, targets, layer="features.3", relu=True,
                      keep_channels=True)
    torch.testing.assert_close(ours.maps[:, 0], theirs, rtol=1e-9, atol=1e-12)
    signed = cc.explain(tiny, tiny_x, "guided_gradcam", spec, targets, layer="features.3")
    assert (signed.maps < 0).any() and (signed.maps > 0).any()
