"""The peers' contrastive targets as our contrasts: equal to pytorch-grad-cam's FinerCAM and ReST target,
to torch-cam's FinerCAM, and to the ContrastCAM formula written out with autograd — on a torchvision
ResNet, GradCAM base. The peers apply a ReLU (and pytorch-grad-cam a min-max scaling and a resize); we
apply the same to our signed maps before comparing (``relu=True`` is the textbook map)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import classcontrast as cc


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=20).double().eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (m - lo) / (hi - lo + 1e-7)


def _as_pytorch_grad_cam(layer_maps: torch.Tensor, size: int) -> np.ndarray:
    """pytorch-grad-cam's post-processing of a ReLU'd layer map: min-max, resize, min-max."""
    return _minmax(F.interpolate(_minmax(layer_maps)[:, None], size=(size, size), mode="bilinear")[:, 0]).numpy()


def test_finer_equals_pytorch_grad_cams_finercam(resnet: torch.nn.Module, x: torch.Tensor) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    for alpha in (1.0, 0.6):
        with pgc.FinerCAM(resnet, [resnet.layer4]) as cam:
            theirs = cam(x, alpha=alpha)  # target: the top logit; references: the 3 closest logits
        ours = cc.explain(resnet, x, "gradcam", cc.Finer(k=3, alpha=alpha), cc.TopK(1), layer="layer4", relu=True)
        np.testing.assert_allclose(theirs, _as_pytorch_grad_cam(ours.layer_maps[:, 0], 64), atol=1e-6)
    # explicit references and a target other than the top class: the target callable itself
    y = resnet(x).detach()
    t, refs = [int(v) for v in y.argsort(1)[:, -2]], [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    targets = [pgc.utils.model_targets.FinerWeightedTarget(t[i], refs[i], 0.8) for i in range(3)]
    with pgc.GradCAM(resnet, [resnet.layer4]) as cam:
        theirs = cam(x, targets=targets)
    ours = cc.explain(resnet, x, "gradcam", cc.Finer(alpha=0.8, references=torch.tensor(refs)), [[v] for v in t],
                      layer="layer4", relu=True)
    np.testing.assert_allclose(theirs, _as_pytorch_grad_cam(ours.layer_maps[:, 0], 64), atol=1e-6)


def test_rest_equals_pytorch_grad_cams_rest_target(resnet: torch.nn.Module, x: torch.Tensor) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    targets = [3, 11, 19]
    with pgc.GradCAM(resnet, [resnet.layer4]) as cam:
        theirs = cam(x, targets=[pgc.utils.model_targets.ClassifierOutputReST(t) for t in targets])
    ours = cc.explain(resnet, x, "gradcam", "rest", targets, layer="layer4", relu=True)
    np.testing.assert_allclose(theirs, _as_pytorch_grad_cam(ours.layer_maps[:, 0], 64), atol=1e-6)


def test_finer_mean_equals_torch_cams_finercam(resnet: torch.nn.Module, x: torch.Tensor) -> None:
    methods = pytest.importorskip("torchcam.methods")
    targets = [2, 7, 13]
    for gamma, refs in ((0.6, None), (1.0, [[0, 1], [4, 5], [6, 9]])):
        with methods.FinerCAM(resnet, "layer4", input_shape=(3, 64, 64), base_method=methods.GradCAM,
                              gamma=gamma, num_references=3) as extractor:
            scores = resnet(x)
            (theirs,) = extractor(targets, scores, comparison_idx=refs, normalized=False)
        contrast = cc.FinerMean(k=3, gamma=gamma, references=None if refs is None else torch.tensor(refs))
        ours = cc.explain(resnet, x, "gradcam", contrast, targets, layer="layer4", relu=True)
        torch.testing.assert_close(ours.layer_maps[:, 0], theirs.detach(), rtol=1e-6, atol=1e-9)


def test_contrast_cam_is_the_authors_cross_entropy(resnet: torch.nn.Module, x: torch.Tensor) -> None:
    """GradCAM of the cross-entropy towards Q, written out with autograd (the authors' recipe)."""
    q = [4, 4, 17]
    acts = {}
    handle = resnet.layer4.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    try:
        loss = F.cross_entropy(resnet(x), torch.tensor(q), reduction="sum")
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(loss, acts["a"])
    expected = (g.mean((2, 3), keepdim=True) * acts["a"]).sum(1).detach()
    ours = cc.explain(resnet, x, "gradcam", cc.ContrastCAM(q), cc.TopK(1), layer="layer4")
    torch.testing.assert_close(ours.layer_maps[:, 0], expected, rtol=1e-9, atol=1e-12)
    assert ours.contrast == "contrast_cam"  # one Q per image: no single class to name in the key


def test_peer_contrasts_by_name_and_on_every_method(resnet: torch.nn.Module, x: torch.Tensor) -> None:
    """Names and class names work as for our contrasts, and every method takes them (one backward pass
    each); for a linear method the maps are linear in the contrast's logit gradient (checked against
    per-class maps)."""
    bundle = cc.ModelBundle(resnet, lambda im: im, cc.models.bundle.Normalize([0.0] * 3, [1.0] * 3),
                            [f"class {i}" for i in range(20)], name="resnet")
    ex = cc.explain(bundle, x, "gradient", ["finer", "finer_mean", "rest", cc.ContrastCAM("class 4")], cc.TopK(1))
    assert list(ex) == ["finer", "finer_mean", "rest", "contrast_cam:class 4"]
    per_class = torch.stack([cc.explain(resnet, x, "gradient", "original", c).maps[:, 0] for c in range(20)], 1)
    for key, contrast in zip(ex, [cc.Finer(), cc.FinerMean(), cc.ReST(), cc.ContrastCAM(4)], strict=True):
        g = contrast.grad(ex[key].logits, ex[key].targets[:, 0])  # (B, C)
        torch.testing.assert_close(ex[key].maps[:, 0], torch.einsum("bc,bchw->bhw", g, per_class),
                                   rtol=1e-8, atol=1e-10)
    for method in ("gradient_x_input", "integrated_gradients", "smoothgrad", "lrp", "linear_approx", "xgradcam",
                   "fullgrad"):
        opts = cc.methods.options_for(method, {"steps": 2, "samples": 2})
        out = cc.explain(resnet, x[:1], method, ["finer", "rest"], cc.TopK(1), **opts)
        assert all(torch.isfinite(e.maps).all() for e in out.values()), method
    with pytest.raises(cc.ClassContrastError, match="contain the target"):
        cc.explain(resnet, x, "gradient", cc.Finer(references=[0, 1, 2]), [[0], [1], [2]])
    with pytest.raises(cc.ClassContrastError, match="needs a class Q"):
        cc.get_contrast("contrast_cam")


def test_the_explorer_offers_the_peers_when_asked(tmp_path) -> None:
    from tools.browser import Browser

    from tests.test_cli import run

    page = tmp_path / "why.html"
    assert run(["explain", "--contrast", "weighted", "finer", "rest", "--out", str(tmp_path / "why.png"),
                "--html", str(page)]) == 0
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        buttons = b.eval("[...document.querySelectorAll('button[data-control=contrast]')].map(e => e.dataset.value)")
        assert {"finer", "rest"} <= set(buttons) and "finer_mean" not in buttons
        b.click('button[data-control="contrast"][data-value="finer"]')
        b.settled()
        assert "Finer-CAM" in b.eval("document.querySelector('.cc-question').textContent")
