"""The methods users coming from Captum and pytorch-grad-cam miss, each with every contrast against its peer on the
same draws (GradientSHAP: Captum's draws replaced by ours), float64; `cc.overlay_rgb` against pytorch-grad-cam's
``show_cam_on_image``; and class sensitivity on constructed cases."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn

import classcontrast as cc
from classcontrast.methods.eigen import first_component
from classcontrast.methods.shap import GradientShap

from .reference import signed_projection

CONTRASTS = ("original", "weighted", "foil")
TARGET, FOIL = 2, 4


def _cnn(seed: int = 0, inplace: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=inplace), nn.Conv2d(6, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(72, 6)).double().eval()


def _x(seed: int = 1, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _contrast(name: str) -> object:
    return cc.Foil(FOIL) if name == "foil" else name


def _relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


# --- EigenCAM, EigenGradCAM --------------------------------------------------------------------------


def test_eigencam_is_pytorch_grad_cams_projection_and_the_same_for_every_class_and_contrast() -> None:
    model, x = _cnn(), _x()
    acts: list[torch.Tensor] = []
    hook = model[2].register_forward_hook(lambda m, i, o: acts.append(o.detach()))
    try:
        model(x)
    finally:
        hook.remove()
    want = signed_projection(acts[0].numpy())
    got = cc.explain(model, x, "eigencam", list(CONTRASTS[:2]), cc.TopK(3), layer="2")
    for ex in got.values():
        for j in range(3):
            assert np.allclose(ex.layer_maps[:, j].numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert cc.METHODS["eigencam"].class_agnostic and _no_hooks(model)
    assert all(ex.class_agnostic for ex in got.values())  # the result says so, and its figure
    fig = cc.plot_explanations(list(x), dict(got))
    assert any("class-agnostic" in t.get_text() for ax in fig.axes for t in ax.texts)
    assert not cc.explain(model, x, "eigengradcam", "weighted", layer="2").class_agnostic
    assert not cc.explain(model, x, "eigencam", cc.Foil(TARGET), TARGET, layer="2").layer_maps.any()  # t rather than t


def test_eigencam_runs_no_backward_pass() -> None:
    """EigenCAM reads no gradient: however many maps, no module's backward runs (a hook counts them)."""
    model, x = _cnn(), _x()
    calls: list[int] = []
    hook = model[6].register_full_backward_hook(lambda m, gi, go: calls.append(1))
    try:
        ex = cc.explain(model, x, "eigencam", ["original", "weighted", "max"], cc.TopK(4), layer="2")
        assert not calls and ex["max"].layer_maps.shape[:2] == (2, 4)
        cc.explain(model, x, "eigengradcam", "weighted", 1, layer="2")
        assert calls  # (the hook does count a method that reads the gradient)
    finally:
        hook.remove()


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_eigengradcam_is_pytorch_grad_cams_projection_of_the_objectives_gradient(contrast: str) -> None:
    model, x = _cnn(), _x()
    acts: list[torch.Tensor] = []
    hook = model[2].register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        objective = cc.ContrastModel(model, _contrast(contrast))(x)[:, TARGET].sum()
    finally:
        hook.remove()
    g = torch.autograd.grad(objective, acts[0])[0]
    z = (g * acts[0]).detach().numpy()
    want = signed_projection(z)
    got = cc.explain(model, x, "eigengradcam", _contrast(contrast), TARGET, layer="2").layer_maps[:, 0].numpy()
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_first_component_on_a_hand_computed_case() -> None:
    """Two channels that are the same line: its projection is the centred line itself, signed as the sum."""
    line = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    z = torch.stack([line, line])[None]  # (1, K=2, N=4)
    got = first_component(z, 1)[0]
    torch.testing.assert_close(got, (line - 1.5) * 2 ** 0.5)


# --- GradientSHAP --------------------------------------------------------------------------------------


@pytest.fixture
def captum_draws_ours(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Captum's GradientShap drawing exactly our draws: baseline indices (its np.random.choice), path points (its
    np.random.uniform) and noise (NoiseTunnel's normal draw)."""
    import captum._utils.common as common
    import captum.attr._core.gradient_shap as gs
    import captum.attr._core.noise_tunnel as nt

    state: dict[str, object] = {}

    def ours() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        x, m = state["x"], state["method"]
        return [m.draws(x, i, state["n_baselines"]) for i in range(x.shape[0])]  # type: ignore[union-attr]

    fake = types.SimpleNamespace(random=types.SimpleNamespace(
        choice=lambda n, size: torch.cat([d[0] for d in ours()]).numpy(),
        uniform=lambda lo, hi, size: torch.cat([d[1] for d in ours()]).numpy()))
    monkeypatch.setattr(common, "np", fake)
    monkeypatch.setattr(gs, "np", fake)
    monkeypatch.setattr(nt.NoiseTunnel, "_add_noise_to_input", staticmethod(
        lambda inp, stdev, n: inp.repeat_interleave(n, 0) + torch.cat([d[2] for d in ours()])))
    return state


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_gradient_shap_equals_captums_on_the_same_draws(contrast: str, captum_draws_ours: dict[str, object]) -> None:
    from captum.attr import GradientShap as CaptumShap

    model, x = _cnn(), _x()
    baselines = torch.randn(4, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * 0.3
    method = GradientShap(baselines=baselines, samples=5, stdevs=0.1, seed=3, keep_channels=True,
                          internal_batch_size=3)
    captum_draws_ours.update(x=x, method=method, n_baselines=4)
    ours = cc.explain(model, x, method, _contrast(contrast), TARGET).maps[:, 0]
    ref = CaptumShap(cc.ContrastModel(model, _contrast(contrast))).attribute(
        x, baselines, n_samples=5, stdevs=0.1, target=TARGET)
    assert _relerr(ours, ref) < 1e-12 and _no_hooks(model)


def test_gradient_shap_is_complete_for_a_linear_model_and_reproducible() -> None:
    """A linear model: every draw's Σφ is y_t(x) - y_t(x'_k) exactly, so Σφ = y_t(x) - mean_k y_t(x'_k) over the
    drawn baselines; the same maps whatever internal_batch_size; another seed, other maps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).double().eval()
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    baselines = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    method = GradientShap(baselines=baselines, samples=7)
    phi = cc.explain(model, x, method, "original", 1).maps[:, 0].sum((1, 2))
    with torch.no_grad():
        for i in range(3):
            index = method.draws(x, i, 6)[0]
            want = model(x[i : i + 1])[0, 1] - model(baselines[index])[:, 1].mean()
            assert float(phi[i]) == pytest.approx(float(want), rel=1e-10)
    again = cc.explain(model, x, GradientShap(baselines=baselines, samples=7, internal_batch_size=2), "original", 1)
    torch.testing.assert_close(again.maps[:, 0].sum((1, 2)), phi, rtol=1e-12, atol=1e-12)
    other = cc.explain(model, x, GradientShap(baselines=baselines, samples=7, seed=1), "original", 1)
    assert not torch.allclose(other.maps, again.maps)


# --- Deconvolution -------------------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_deconvolution_equals_captums(contrast: str) -> None:
    from captum.attr import Deconvolution as CaptumDeconvolution

    model, x = _cnn(inplace=True), _x()
    ours = cc.explain(model, x, "deconvolution", _contrast(contrast), TARGET, keep_channels=True).maps[:, 0]
    ref = CaptumDeconvolution(cc.ContrastModel(model, _contrast(contrast))).attribute(x, target=TARGET)
    assert _relerr(ours, ref) < 1e-12 and _no_hooks(model)
    plain = cc.explain(model, x, "gradient", _contrast(contrast), TARGET, keep_channels=True).maps[:, 0]
    assert _relerr(ours, plain) > 1e-3  # the rule changes the map


# --- overlay_rgb -----------------------------------------------------------------------------------------


def test_overlay_rgb_unsigned_is_show_cam_on_image_and_signed_keeps_the_sign() -> None:
    from pytorch_grad_cam.utils.image import scale_cam_image, show_cam_on_image

    rng = np.random.default_rng(0)
    image = rng.random((24, 32, 3))
    signed = rng.standard_normal((24, 32))
    theirs = show_cam_on_image(image.astype(np.float32), scale_cam_image(np.maximum(signed, 0)[None])[0],
                               use_rgb=True)
    ours = cc.overlay_rgb(image, signed, view="unsigned")
    assert ours.dtype == np.uint8 and ours.shape == (24, 32, 3)
    # OpenCV's JET and matplotlib's jet differ by a few levels; the blend and scaling are the same
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 3
    grey = cc.overlay_rgb(image, np.zeros((6, 8)))  # a zero map: the grey backdrop alone, resized map or not
    lum = image @ np.array([0.299, 0.587, 0.114])
    assert np.array_equal(grey[..., 0], np.rint(255 * (0.25 + 0.6 * lum)).astype(np.uint8))
    one = np.zeros((24, 32))
    one[5, 5], one[10, 10] = 1.0, -1.0
    drawn = cc.overlay_rgb(image, one, scale=1.0).astype(int)
    assert drawn[5, 5, 0] > drawn[5, 5, 2] and drawn[10, 10, 2] > drawn[10, 10, 0]  # red for, blue against
    with pytest.raises(cc.ClassContrastError, match="signed"):
        cc.overlay_rgb(image, one, view="jet")


# --- class sensitivity ---------------------------------------------------------------------------------


class _Halves(nn.Module):
    """Class c reads only its own vertical strip of the image: gradient maps of different classes are disjoint."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(classes, 3, 8, 8, dtype=torch.float64))
        mask = torch.zeros(classes, 1, 8, 8, dtype=torch.float64)
        for c in range(classes):
            mask[c, :, :, 2 * c : 2 * c + 2] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.w * self.mask)


def test_class_sensitivity_on_constructed_cases() -> None:
    """Disjoint classes: the gradient maps share no top pixel and correlate below 0 (sensitivity above 1 - 0); a
    class-blind method (EigenCAM): sensitivity 0 and overlap 1 exactly; the per-class ρ equal scipy's."""
    from scipy.stats import spearmanr

    model, x = _Halves(), torch.rand(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = cc.class_sensitivity(model, x, "gradient", "original", k=3)
    assert (got.sensitivity > 0.9).all() and (got.top_overlap == 0).all() and got.classes.shape == (3, 3)
    maps = cc.explain(model, x, "gradient", "original", got.classes).maps.flatten(2).numpy()
    for i in range(3):
        for j in (1, 2):
            assert float(got.rho[i, j - 1]) == pytest.approx(spearmanr(maps[i, 0], maps[i, j])[0], abs=1e-12)
    blind = cc.class_sensitivity(_cnn(), _x(n=3), "eigencam", "weighted", k=4, layer="2")
    assert torch.equal(blind.sensitivity, torch.zeros(3, dtype=torch.float64)) and (blind.top_overlap == 1).all()
    foil = cc.class_sensitivity(model, x, "gradient", cc.Foil(0), k=3)  # t_1 rather than t_2 vs rather than t_3
    assert foil.contrast.startswith("foil") and foil.rho.shape == (3, 1)
    with pytest.raises(cc.ClassContrastError, match="k >= 3"):
        cc.class_sensitivity(model, x, "gradient", cc.Foil(0), k=2)


def test_the_class_sensitivity_command(tmp_path, embedded: cc.ModelBundle) -> None:
    """`classcontrast evaluate class-sensitivity`: one row per method × contrast, equal to cc.class_sensitivity on
    the same images (the bundled photos, two of them); EigenCAM class-blind on every image."""
    import csv

    from classcontrast.data.specs import open_source
    from tests.test_cli import run

    assert run(["evaluate", "class-sensitivity", "--limit", "2", "--method", "gradcam", "eigencam", "--contrast",
                "original", "weighted", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "class_sensitivity.csv") as fh:
        rows = {(r["method"], r["contrast"]): r for r in csv.DictReader(fh)}
    assert set(rows) == {(m, c) for m in ("gradcam", "eigencam") for c in ("original", "weighted")}
    source = open_source(None, embedded.categories).select(limit=2, seed=0)
    x = torch.stack([embedded.transform(s.load()) for s in source])
    want = cc.class_sensitivity(embedded, x, "gradcam", "weighted")
    assert float(rows[("gradcam", "weighted")]["sensitivity"]) == pytest.approx(want.mean_sensitivity, abs=1e-6)
    assert float(rows[("eigencam", "original")]["sensitivity"]) == 0 and rows[("eigencam", "weighted")][
        "class_blind_share"] == "1.0"


# --- DeepLIFT, DeepLiftSHAP --------------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_deeplift_equals_captums(contrast: str) -> None:
    """Captum's DeepLift and DeepLiftShap (rescale rule) for original, weighted and a foil, float64; an in-place ReLU
    and one ReLU module used twice (which Captum refuses) checked against the same network built without them."""
    from captum.attr import DeepLift as CaptumDeepLift
    from captum.attr import DeepLiftShap as CaptumDeepLiftShap

    model, x = _cnn(), _x()
    base = torch.randn_like(x) * 0.2
    ours = cc.explain(model, x, "deeplift", _contrast(contrast), TARGET, baseline=base, keep_channels=True)
    ref = CaptumDeepLift(cc.ContrastModel(model, _contrast(contrast))).attribute(x, base, target=TARGET)
    assert _relerr(ours.maps[:, 0], ref) < 1e-12 and _no_hooks(model)
    dist = torch.randn(3, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 0.3
    ours = cc.explain(model, x, "deeplift_shap", _contrast(contrast), TARGET, baselines=dist, keep_channels=True,
                      internal_batch_size=4)
    ref = CaptumDeepLiftShap(cc.ContrastModel(model, _contrast(contrast))).attribute(x, dist, target=TARGET)
    assert _relerr(ours.maps[:, 0], ref) < 1e-12


def test_deeplift_sums_to_delta_and_follows_shared_relus() -> None:
    """Summation-to-delta for a ReLU network: Σφ = y_t(x) - y_t(x') for original (to 1e-10); a network whose one
    ReLU module is called twice, in place, gives the maps of the same network with two ReLUs."""
    model, x = _cnn(), _x()
    phi = cc.explain(model, x, "deeplift", "original", TARGET).maps[:, 0].sum((1, 2))
    with torch.no_grad():
        want = model(x)[:, TARGET] - model(torch.zeros_like(x))[:, TARGET]
    torch.testing.assert_close(phi, want, rtol=1e-10, atol=1e-10)

    class Shared(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net, self.relu = net, nn.ReLU(inplace=True)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            n = self.net
            return n[6](n[5](n[4](self.relu(n[2](self.relu(n[0](z)))))))

    shared = Shared(model)
    got = cc.explain(shared, x, "deeplift", ["original", "weighted"], TARGET)
    want_maps = cc.explain(model, x, "deeplift", ["original", "weighted"], TARGET)
    for k in ("original", "weighted"):
        torch.testing.assert_close(got[k].maps, want_maps[k].maps, rtol=1e-12, atol=1e-14)


def test_deeplift_on_the_embedded_model_equals_captums(embedded64: nn.Module, photo64: torch.Tensor) -> None:
    from captum.attr import DeepLift as CaptumDeepLift

    x = torch.nn.functional.interpolate(photo64, size=64)
    base = torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4)
    for contrast in map(_contrast, CONTRASTS):
        ours = cc.explain(embedded64, x, "deeplift", contrast, 281, baseline=base, keep_channels=True).maps[:, 0]
        ref = CaptumDeepLift(cc.ContrastModel(embedded64, contrast)).attribute(x, base, target=281)
        assert _relerr(ours, ref) < 1e-10


def _small(photo64: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(photo64, size=64)  # the real weights at a twelfth of the pixels


def test_deeplift_shap_and_gradient_shap_on_the_embedded_model_equal_captums(
        embedded64: nn.Module, photo64: torch.Tensor, captum_draws_ours: dict[str, object]) -> None:
    """The real weights, float64, original, weighted and a foil: Captum's DeepLiftShap on the same baselines, its
    GradientShap on the same draws."""
    from captum.attr import DeepLiftShap as CaptumDeepLiftShap
    from captum.attr import GradientShap as CaptumShap

    x = _small(photo64)
    dist = torch.stack([x[0] * 0.2, torch.nn.functional.avg_pool2d(x, 9, 1, 4)[0], x[0].flip(-1) * 0.5])
    method = GradientShap(baselines=dist, samples=3, stdevs=0.05, seed=1, keep_channels=True)
    captum_draws_ours.update(x=x, method=method, n_baselines=3)
    for contrast in map(_contrast, CONTRASTS):
        model = cc.ContrastModel(embedded64, contrast)
        ours = cc.explain(embedded64, x, "deeplift_shap", contrast, 281, baselines=dist, keep_channels=True)
        assert _relerr(ours.maps[:, 0], CaptumDeepLiftShap(model).attribute(x, dist, target=281)) < 1e-10
        ours = cc.explain(embedded64, x, method, contrast, 281)
        ref = CaptumShap(model).attribute(x, dist, n_samples=3, stdevs=0.05, target=281)
        assert _relerr(ours.maps[:, 0], ref) < 1e-10
    assert _no_hooks(embedded64)


class _Rule6(torch.autograd.Function):
    """ReLU6 forward; backward: guided, ReLU(g)·[0 < x < 6], or deconvolution, ReLU(g)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor, guided: bool) -> torch.Tensor:
        ctx.save_for_backward(x)  # type: ignore[attr-defined]
        ctx.guided = guided  # type: ignore[attr-defined]
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx: object, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        gate = ((x > 0) & (x < 6)).to(g.dtype) if ctx.guided else 1  # type: ignore[attr-defined]
        return g.clamp_min(0) * gate, None


def _swap_relu6(model: nn.Module, make: object) -> nn.Module:
    """A copy of ``model`` whose ReLU6 modules are ``make()``."""
    import copy

    out = copy.deepcopy(model)
    for name, module in list(out.named_modules()):
        if isinstance(module, nn.ReLU6):
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent), attr, make())  # type: ignore[operator]
    return out


@pytest.mark.parametrize("method", ["guided_backprop", "deconvolution"])
def test_relu_rules_on_the_embedded_models_relu6(embedded64: nn.Module, photo64: torch.Tensor, method: str) -> None:
    """The embedded model's rectifiers are ReLU6 modules, which Captum leaves alone (its maps: the plain gradient):
    ours apply the rule there, equal to a slow reference (the ReLU6 modules replaced by the rule written as an autograd
    function) for original, weighted and a foil; with the ReLU6s made nn.ReLU, ours equal Captum's."""
    x, guided = _small(photo64), method == "guided_backprop"

    class Rule6(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return _Rule6.apply(z, guided)

    slow = _swap_relu6(embedded64, Rule6)
    for contrast in CONTRASTS:
        ours = cc.explain(embedded64, x, method, _contrast(contrast), 281, keep_channels=True).maps[:, 0]
        xin = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(cc.ContrastModel(slow, _contrast(contrast))(xin)[:, 281].sum(), xin)
        assert _relerr(ours, ref) < 1e-10
    plain = cc.explain(embedded64, x, "gradient", _contrast("foil"), 281, keep_channels=True)
    assert _relerr(ours, plain.maps[:, 0]) > 0.1 and _no_hooks(embedded64)  # the rule does act
    import captum.attr

    peer = captum.attr.GuidedBackprop if guided else captum.attr.Deconvolution
    relu = _swap_relu6(embedded64, nn.ReLU)
    ours = cc.explain(relu, x, method, "weighted", 281, keep_channels=True).maps[:, 0]
    assert _relerr(ours, peer(cc.ContrastModel(relu, "weighted")).attribute(x, target=281)) < 1e-10


@pytest.mark.parametrize(("method", "contrast"), [("eigencam", "weighted"), *(("eigengradcam", c) for c in CONTRASTS)])
def test_eigen_cams_on_the_embedded_model_are_pytorch_grad_cams_projections(embedded64: nn.Module,
                                                                          photo64: torch.Tensor, method: str,
                                                                          contrast: str) -> None:
    """At conv_head, pytorch-grad-cam's projection of the activations (EigenCAM) or of the weighted contrast's
    Linear Approximation terms (EigenGradCAM), signed as ours (theirs: float32)."""
    x = torch.nn.functional.interpolate(photo64, size=160)  # a 5 × 5 layer map
    acts: list[torch.Tensor] = []
    hook = embedded64.conv_head.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        objective = cc.ContrastModel(embedded64, _contrast(contrast))(x)[:, 281].sum()
    finally:
        hook.remove()
    z = acts[0] if method == "eigencam" else torch.autograd.grad(objective, acts[0])[0] * acts[0]
    want = signed_projection(z.detach().numpy())
    got = cc.explain(embedded64, x, method, _contrast(contrast), 281, layer="conv_head").layer_maps[:, 0].numpy()
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


# --- LIME ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_lime_equals_captums_on_the_same_samples(contrast: str) -> None:
    """Captum's Lime with a weighted linear regression, its default cosine kernel and our coalitions (its perturb_func
    handing them out in order), for original, weighted and a foil; one image at a time, as Captum's Lime runs."""
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr import Lime as CaptumLime

    from classcontrast.methods.segment_methods import Lime

    model, x = _cnn(), _x(n=1)
    seg = (torch.arange(12)[:, None] // 4) * 3 + torch.arange(12)[None] // 4  # 9 square segments
    method = Lime(segments=seg, samples=40, seed=2, baseline=0.1)
    ours = cc.explain(model, x, method, _contrast(contrast), TARGET).maps[0, 0]
    draws = iter(method.draws(9).long())
    ref = CaptumLime(cc.ContrastModel(model, _contrast(contrast)), interpretable_model=SkLearnLinearRegression(),
                     perturb_func=lambda inp, **kw: next(draws)[None]).attribute(
        x, target=TARGET, feature_mask=seg[None, None].expand(1, 3, 12, 12), n_samples=40, baselines=0.1)
    assert _relerr(ours, ref[0, 0].double()) < 1e-5 and _no_hooks(model)  # (Captum's kernel and result: float32)


def test_lime_on_the_embedded_model_equals_captums(embedded64: nn.Module, photo64: torch.Tensor) -> None:
    """The real weights, float64, original, weighted and a foil: Captum's Lime on our coalitions of 16 squares."""
    from captum._utils.models.linear_model import SkLearnLinearRegression
    from captum.attr import Lime as CaptumLime

    from classcontrast.methods.segment_methods import Lime

    x = _small(photo64)
    seg = (torch.arange(64)[:, None] // 16) * 4 + torch.arange(64)[None] // 16
    for contrast in ("original", "weighted", cc.Foil(282)):
        method = Lime(segments=seg, samples=30, seed=4)
        ours = cc.explain(embedded64, x, method, contrast, 281).maps[0, 0]
        draws = iter(method.draws(16).long())
        ref = CaptumLime(cc.ContrastModel(embedded64, contrast), interpretable_model=SkLearnLinearRegression(),
                         perturb_func=lambda inp, draws=draws, **kw: next(draws)[None]).attribute(
            x, target=281, feature_mask=seg[None, None].expand(1, 3, 64, 64), n_samples=30, baselines=0.0)
        assert _relerr(ours, ref[0, 0].double()) < 1e-5
