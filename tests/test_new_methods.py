"""Integrated Gradients, SmoothGrad and LRP: against Captum and zennit, identities, references, hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import classcontrast as cc
from classcontrast.methods import SmoothGrad
from classcontrast.methods.integrated import quadrature
from tests.conftest import randomize_bn
from tests.reference import contrast_slow, input_jacobian, relerr
from tests.test_cli import run
from tests.test_hygiene import _assert_untouched, _snapshot

pytestmark = pytest.mark.filterwarnings("ignore::classcontrast.errors.ClassContrastWarning")
NAMED = ["original", "mean", "max", "weighted", "probability"]


# --- Integrated Gradients ------------------------------------------------------------------------------


def test_quadrature_rules_integrate_polynomials() -> None:
    for rule, degree in [("gausslegendre", 2 * 6 - 1), ("riemann_trapezoid", 1), ("riemann_middle", 1),
                         ("riemann_left", 0), ("riemann_right", 0)]:
        a, w = quadrature(rule, 6)
        for d in range(degree + 1):
            assert float((w * a**d).sum()) == pytest.approx(1 / (d + 1), abs=1e-12), (rule, d)
    with pytest.raises(cc.ClassContrastError, match="unknown integration rule"):
        quadrature("simpson", 4)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right"])
def test_integrated_gradients_equal_captum_on_real_weights(embedded64: nn.Module, photo64: torch.Tensor,
                                                           rule: str) -> None:
    from captum.attr import IntegratedGradients

    target = torch.tensor([967])
    photo = torch.nn.functional.interpolate(photo64, size=112)  # the real weights at a quarter of the pixels
    ours = cc.explain(embedded64, photo, "integrated_gradients", ["original", "weighted"], target, steps=6,
                      integration=rule, keep_channels=True)
    # Captum's trapezoid weights integrate to (n-1)/n instead of 1 (ours are the composite trapezoid rule)
    scale = 5 / 6 if rule == "riemann_trapezoid" else 1.0
    for contrast in ("original", "weighted"):
        ref = IntegratedGradients(cc.ContrastModel(embedded64, contrast)).attribute(
            photo, target=target, n_steps=6, method=rule)
        # Captum rounds its step sizes (and Riemann points) to float32
        assert relerr(ours[contrast].maps[:, 0] * scale, ref) < 1e-6, (rule, contrast)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_blur_baseline_is_torchvisions_gaussian_blur(dtype: torch.dtype) -> None:
    """Our separable blur against torchvision's 2-D one (the oracle): the study's kernel 101 / σ 15, shrunk to the
    image as reflect padding needs, a random σ in a range, and a small kernel."""
    from torchvision.transforms.functional import gaussian_blur

    from classcontrast.baselines import baseline as baseline_image

    torch.manual_seed(0)
    x = torch.randn(2, 3, 60, 45, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert (baseline_image(x, "blur") - gaussian_blur(x, [87, 87], [15.0, 15.0])).abs().max() < tol
    ours = baseline_image(x, "blur", sigma=1.3, kernel=5)
    assert (ours - gaussian_blur(x, [5, 5], [1.3, 1.3])).abs().max() < tol
    drawn = baseline_image(x, "blur", sigma=(1.0, 3.0), generator=torch.Generator().manual_seed(4))
    sigma = float(1.0 + 2.0 * torch.rand((), generator=torch.Generator().manual_seed(4)))
    assert (drawn - gaussian_blur(x, [87, 87], [sigma, sigma])).abs().max() < tol
    assert (ours - x).abs().max() > 0.1  # it blurs


@pytest.mark.parametrize("baseline", ["zeros", "blur", "tensor"])
def test_integrated_gradients_baselines_equal_captum(tiny: nn.Module, tiny_x: torch.Tensor, baseline: str) -> None:
    from captum.attr import IntegratedGradients

    from classcontrast.baselines import baseline as baseline_image

    base = {"zeros": torch.zeros_like(tiny_x), "blur": baseline_image(tiny_x, "blur"),
            "tensor": torch.full((1, 3, 1, 1), 0.3, dtype=torch.float64)}[baseline]
    spec = base if baseline == "tensor" else baseline
    targets = torch.tensor([0, 3, 6])
    for contrast in ["mean", "max", "probability", cc.Foil(2)]:
        ours = cc.explain(tiny, tiny_x, "integrated_gradients", contrast, targets, steps=8, baseline=spec,
                          keep_channels=True, internal_batch_size=5)
        ref = IntegratedGradients(cc.ContrastModel(tiny, contrast)).attribute(
            tiny_x, baselines=base.expand_as(tiny_x), target=targets, n_steps=8)
        assert relerr(ours.maps[:, 0], ref) < 1e-6, (baseline, contrast)


def test_integrated_gradients_on_a_random_torchvision_net() -> None:
    from captum.attr import IntegratedGradients

    torch.manual_seed(0)
    net = randomize_bn(torchvision.models.resnet18(num_classes=10)).double().eval()
    x = torch.randn(2, 3, 40, 40, dtype=torch.float64)
    ours = cc.explain(net, x, "integrated_gradients", "weighted", [1, 7], steps=5, keep_channels=True)
    ref = IntegratedGradients(cc.ContrastModel(net, "weighted")).attribute(x, target=torch.tensor([1, 7]),
                                                                           n_steps=5)
    assert relerr(ours.maps[:, 0], ref) < 1e-6


class SmoothNet(nn.Module):
    """Softplus everywhere: Integrated Gradients' path integral is smooth, so quadrature converges fast."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Softplus(), nn.Conv2d(5, 5, 3, stride=2),
                                  nn.Softplus(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_completeness_for_every_contrast() -> None:
    """Σ map = O(x) − O(x′) per contrast (the contrast back-propagated at every point of the path)."""
    torch.manual_seed(0)
    net = SmoothNet().double().eval()
    x = torch.randn(3, 3, 10, 10, dtype=torch.float64)
    targets = torch.tensor([[0, 4], [2, 1], [5, 3]])
    contrasts = [*NAMED, cc.Foil(1)]
    ex = cc.explain(net, x, "integrated_gradients", contrasts, targets, steps=48)
    with torch.no_grad():
        y, y0 = net(x), net(torch.zeros_like(x))
    for name, c in zip(ex, contrasts, strict=True):
        contrast = cc.get_contrast(c)
        for j in range(2):
            want = contrast.score(y, targets[:, j]) - contrast.score(y0, targets[:, j])
            got = ex[name].layer_maps[:, j].sum((-2, -1))
            tol = 1e-4 if name == "max" else 1e-9  # max has kinks where the runner-up changes along the path
            assert float((got - want).abs().max()) <= tol * float(want.abs().max()), (name, j)


def _per_class_ig(model: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-class IG maps (C, B, H, W) from the full input Jacobian at every path point (the slow way)."""
    alphas, weights = quadrature("gausslegendre", steps)
    total = None
    for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
        _, jac = input_jacobian(model, a * x)
        total = w * jac if total is None else total + w * jac
    return (total * x[None]).sum(2)


def test_constant_cotangent_contrasts_are_combinations_of_per_class_maps(tiny: nn.Module,
                                                                         tiny_x: torch.Tensor) -> None:
    """For contrasts whose cotangent does not depend on the point (original, mean, foil), one pass equals
    the definition built from every class's IG map."""
    phi = _per_class_ig(tiny, tiny_x, 6)
    with torch.no_grad():
        y = tiny(tiny_x)
    ex = cc.explain(tiny, tiny_x, "integrated_gradients", ["original", "mean", cc.Foil(5)], cc.TopK(2), steps=6)
    for kind, name in [("original", "original"), ("mean", "mean"), ("foil", "foil")]:
        for b in range(tiny_x.shape[0]):
            for j, t in enumerate(ex[name].targets[b].tolist()):
                ref = contrast_slow(phi[:, b], y[b], t, kind, foil=5)
                assert relerr(ex[name].layer_maps[b, j], ref) < 1e-9, (kind, b, t)


# --- SmoothGrad ----------------------------------------------------------------------------------------


@pytest.fixture
def same_noise(monkeypatch: pytest.MonkeyPatch) -> SmoothGrad:
    """Captum's NoiseTunnel drawing exactly our SmoothGrad's noise."""
    import captum.attr._core.noise_tunnel as nt

    method = SmoothGrad(samples=6, sigma=0.2, keep_channels=True, internal_batch_size=4)
    state: dict[str, torch.Tensor] = {}

    def add_noise(inp: torch.Tensor, stdev: float, n: int) -> torch.Tensor:
        noise = torch.cat([method.noise(state["x"], b) for b in range(state["x"].shape[0])])
        return inp.repeat_interleave(n, 0) + noise

    monkeypatch.setattr(nt.NoiseTunnel, "_add_noise_to_input", staticmethod(add_noise))
    method.state = state  # type: ignore[attr-defined]
    return method


@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_equals_captum_noise_tunnel(embedded64: nn.Module, photo64: torch.Tensor,
                                               same_noise: SmoothGrad, squared: bool) -> None:
    from captum.attr import NoiseTunnel, Saliency

    x = torch.nn.functional.interpolate(photo64, size=64)
    same_noise.state["x"] = x  # type: ignore[attr-defined]
    same_noise.squared = squared
    for contrast in ("original", "weighted"):
        ours = cc.explain(embedded64, x, same_noise, contrast, [967]).maps[:, 0]
        ref = NoiseTunnel(Saliency(cc.ContrastModel(embedded64, contrast))).attribute(
            x, nt_type="smoothgrad_sq" if squared else "smoothgrad", nt_samples=6, stdevs=1.0, target=967,
            abs=False)
        assert relerr(ours, ref) < 1e-12, (contrast, squared)


def test_smoothgrad_is_reproducible_whatever_the_chunking(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    a = cc.explain(tiny, tiny_x, "smoothgrad", "weighted", samples=5, seed=3, internal_batch_size=2).maps
    b = cc.explain(tiny, tiny_x, "smoothgrad", "weighted", samples=5, seed=3).maps
    c = cc.explain(tiny, tiny_x, "smoothgrad", "weighted", samples=5, seed=4).maps
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(b, c)
    with pytest.raises(cc.ClassContrastError, match="at least 1 sample"):
        cc.explain(tiny, tiny_x, "smoothgrad", samples=0)


def test_smoothgrad_one_sample_without_noise_is_the_gradient(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    sg = cc.explain(tiny, tiny_x, "smoothgrad", NAMED, cc.TopK(2), samples=1, sigma=0.0)
    grad = cc.explain(tiny, tiny_x, "gradient", NAMED, cc.TopK(2))
    for k in NAMED:
        torch.testing.assert_close(sg[k].maps, grad[k].maps, rtol=1e-12, atol=1e-15)


# --- LRP -------------------------------------------------------------------------------------------------


def _zennit(model: nn.Module, x: torch.Tensor, contrast: object, targets: list[int], composite: str,
            canonizers: list) -> torch.Tensor:
    """zennit's own attributor, the output relevance the contrast's gradient at the (canonized) output."""
    from zennit.attribution import Gradient
    from zennit.composites import COMPOSITES

    kwargs = {"canonizers": canonizers}
    if composite == "epsilon_gamma_box":
        kwargs |= {"low": x.amin((0, 2, 3), keepdim=True), "high": x.amax((0, 2, 3), keepdim=True)}
    c, t = cc.get_contrast(contrast), torch.tensor(targets)
    with Gradient(model=model, composite=COMPOSITES[composite](**kwargs)) as attributor:
        return attributor(x, lambda out: c.grad(out.detach(), t))[1]


@pytest.mark.parametrize(("arch", "composite"), [("resnet18", "epsilon_plus_flat"), ("vgg11_bn", "epsilon_plus_flat"),
                                                 ("resnet18", "epsilon_gamma_box"),
                                                 ("vgg11_bn", "epsilon_alpha2_beta1_flat")])
def test_lrp_equals_zennit_on_torchvision_nets(arch: str, composite: str) -> None:
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, num_classes=8)
    if arch == "vgg11_bn":  # VGG's classifier, 64 wide instead of 4096 (its 100 M weights in float64 took 20 s)
        net.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                       nn.ReLU(True), nn.Dropout(), nn.Linear(64, 8))
    net = randomize_bn(net).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    canonizer = ResNetCanonizer() if arch == "resnet18" else VGGCanonizer()
    before = _snapshot(net)
    with torch.no_grad():
        y = net(x)
    for contrast in [*NAMED, cc.Foil(3)]:
        ex = cc.explain(net, x, "lrp", contrast, [1, 5], composite=composite, keep_channels=True)
        ref = _zennit(net, x, contrast, [1, 5], composite, [canonizer])
        assert relerr(ex.maps[:, 0], ref) < 1e-12, (arch, composite, contrast)
        # the canonized model's logits: zennit's merged BatchNorm divides by √(1+ε)
        assert relerr(ex.logits, y) < 1e-3
    _assert_untouched(net, before)


def test_lrp_equals_zennit_on_the_embedded_model(embedded64: nn.Module, photo64: torch.Tensor) -> None:
    from zennit.canonizers import SequentialMergeBatchNorm

    photo = torch.nn.functional.interpolate(photo64, size=112)  # the real weights at a quarter of the pixels
    for contrast in ("original", "weighted", "probability"):
        ex = cc.explain(embedded64, photo, "lrp", contrast, [967], keep_channels=True)
        ref = _zennit(embedded64, photo, contrast, [967], "epsilon_plus_flat", [SequentialMergeBatchNorm()])
        assert relerr(ex.maps[:, 0], ref) < 1e-12, contrast


def test_lrp_contrasts_are_combinations_of_per_class_relevance(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    """LRP is linear in the output relevance: every contrast = its definition over all classes' maps."""
    c = 7
    per_class = cc.explain(tiny, tiny_x, "lrp", "original", [list(range(c))] * 3)  # (B, C, H, W)
    phi = per_class.layer_maps.transpose(0, 1)  # (C, B, H, W)
    ex = cc.explain(tiny, tiny_x, "lrp", [*NAMED, cc.Foil(2)], cc.TopK(3))
    for kind, name in zip([*NAMED, "foil"], ex, strict=True):
        for b in range(3):
            for j, t in enumerate(ex[name].targets[b].tolist()):
                ref = contrast_slow(phi[:, b], per_class.logits[b], t, kind, foil=2)
                assert relerr(ex[name].layer_maps[b, j], ref) < 1e-10, (kind, b, t)


class ReLUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                                    nn.Linear(4 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _matrix(layer: nn.Module, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, b) with layer(a) = M a + b for a linear layer, by probing it with unit vectors."""
    n = int(np.prod(shape))
    with torch.no_grad():
        b = layer(torch.zeros(1, *shape, dtype=torch.float64)).flatten()
        cols = layer(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1) - b
    return cols.T, b


def _stab(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return z + ((z == 0).double() + z.sign()) * eps


@torch.no_grad()
def sglrp_reference(net: ReLUNet, x: torch.Tensor, t: int) -> torch.Tensor:
    """SGLRP (Iwana et al. 2019) written from its definition: output relevance R_n = p_t(δ_tn − p_n), then the
    epsilon-plus-flat rules layer by layer: Flat for the first layer, z+ for the other convolutions, ε for the
    dense layers, relevance passed through ReLUs."""
    convs = [net.layers[0], net.layers[2]]
    dense = [net.layers[5], net.layers[7]]
    a0 = x[0]
    a1 = torch.relu(convs[0](a0[None]))[0]
    a2 = torch.relu(convs[1](a1[None]))[0]
    a3 = torch.relu(dense[0](a2.flatten()[None]))[0]
    y = dense[1](a3[None])[0]
    p = torch.softmax(y, 0)
    r = p[t] * ((torch.arange(5) == t).double() - p)
    for layer, a in [(dense[1], a3), (dense[0], a2.flatten())]:  # epsilon
        m, b = _matrix(layer, a.shape)
        r = a * (m.T @ (r / _stab(m @ a + b)))
    r = r.reshape(a2.shape)
    m, b = _matrix(convs[1], a1.shape)  # z+: positive inputs with positive weights (and bias), negative with negative
    a = a1.flatten()
    mp, mn = m.clamp(min=0), m.clamp(max=0)
    z = mp @ a.clamp(min=0) + b.clamp(min=0) + mn @ a.clamp(max=0)
    s = r.flatten() / _stab(z)
    r = (a.clamp(min=0) * (mp.T @ s) + a.clamp(max=0) * (mn.T @ s)).reshape(a1.shape)
    m, _ = _matrix(convs[0], a0.shape)  # flat: every connection weighs 1
    ones = (m != 0).double()
    return (ones.T @ (r.flatten() / _stab(ones @ torch.ones(ones.shape[1], dtype=torch.float64)))).reshape(a0.shape)


def test_probability_contrast_is_sglrp_by_its_definition() -> None:
    torch.manual_seed(3)
    net = ReLUNet().double().eval()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    for t in (0, 2, 4):
        ours = cc.explain(net, x, "lrp", "probability", t, keep_channels=True).maps[0, 0]
        ref = sglrp_reference(net, x, t)
        assert relerr(ours, ref) < 1e-9, t
        weighted = cc.explain(net, x, "lrp", "weighted", t, keep_channels=True)
        p = weighted.target_probabilities[0, 0]
        assert relerr(weighted.maps[0, 0] * p * (1 - p), ref) < 1e-9, t


class Exploding:
    """A canonizer that fails after another canonizer already changed the model."""

    def apply(self, module: nn.Module) -> list:
        raise RuntimeError("canonizer exploded")


def test_lrp_leaves_the_model_as_found_when_zennit_raises(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    from zennit.canonizers import SequentialMergeBatchNorm

    tiny.train()
    before = _snapshot(tiny)
    with pytest.raises(cc.ClassContrastError, match=r"zennit could not apply LRP.*canonizer exploded"):
        cc.explain(tiny, tiny_x, "lrp", canonizer=[SequentialMergeBatchNorm(), Exploding()])
    _assert_untouched(tiny, before)  # the BatchNorm merge that did happen is undone
    cc.explain(tiny, tiny_x, "lrp", ["original", "weighted"], cc.TopK(2))
    _assert_untouched(tiny, before)


class TinyAttention(nn.Module):
    """Patches → nn.MultiheadAttention (three inputs: zennit has no rule for it) → a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.attention(tokens, tokens, tokens)[0].mean(1))


def test_lrp_on_a_layer_zennit_cannot_handle_is_one_line_and_leaves_the_model() -> None:
    torch.manual_seed(0)
    model = TinyAttention().double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    before = _snapshot(model)
    with pytest.raises(cc.ClassContrastError, match=r"method lrp failed in the backward pass of TinyAttention: "
                                                    r".*nn\.MultiheadAttention") as info:
        cc.explain(model, x, "lrp", ["original", "weighted"], cc.TopK(2))
    assert "\n" not in str(info.value)
    _assert_untouched(model, before)
    g = cc.explain(model, x, "gradient", "weighted")  # the model still works for the other methods
    _assert_untouched(model, before)
    y, jac = input_jacobian(model, x)
    for b in range(2):  # the weighted contrast by its definition, from every class's own gradient
        reference = contrast_slow(jac[:, b], y[b], int(g.targets[b, 0]), "weighted")
        torch.testing.assert_close(g.maps[b, 0], reference.sum(0))


@pytest.mark.parametrize("method", ["integrated_gradients", "smoothgrad", "lrp"])
def test_hygiene_and_batching(tiny: nn.Module, tiny_x: torch.Tensor, method: str) -> None:
    tiny.train()
    before = _snapshot(tiny)
    together = cc.explain(tiny, tiny_x, method, NAMED, cc.TopK(3))
    _assert_untouched(tiny, before)
    for b in range(3):  # batched images and targets = one image, one target at a time
        for j in range(3):
            t = int(together["weighted"].targets[b, j])
            alone = cc.explain(tiny, tiny_x[b : b + 1], method, NAMED, t)
            for k in NAMED:
                torch.testing.assert_close(together[k].maps[b, j], alone[k].maps[0, 0], rtol=1e-9, atol=1e-12)
    with pytest.raises(cc.ClassContrastError):
        cc.explain(tiny, tiny_x, method, "weighted", 99)
    _assert_untouched(tiny, before)


def test_bad_options_are_one_line(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    with pytest.raises(cc.ClassContrastError, match="does not broadcast"):
        cc.explain(tiny, tiny_x, "integrated_gradients", baseline=torch.zeros(5, 5))
    with pytest.raises(cc.ClassContrastError, match="unknown baseline"):
        cc.explain(tiny, tiny_x, "integrated_gradients", baseline="noise")
    with pytest.raises(cc.ClassContrastError, match="unknown LRP composite"):
        cc.explain(tiny, tiny_x, "lrp", composite="nope")
    with pytest.raises(cc.ClassContrastError, match="has no option 'steps'"):
        cc.explain(tiny, tiny_x, "smoothgrad", steps=3)


def test_cli_method_options_reach_the_method(tmp_path, embedded: cc.ModelBundle,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "p.png"
    cc.sample_image("rocket").save(photo)
    npz = tmp_path / "m.npz"
    assert run(["explain", str(photo), "--method", "integrated_gradients", "--steps", "4", "--integration",
                "riemann_middle", "--contrast", "weighted", "--top-k", "1", "--out", str(tmp_path / "f.png"),
                "--save-maps", str(npz)]) == 0
    x = embedded.transform(cc.load_image(photo))[None]
    ref = cc.explain(embedded, x, "integrated_gradients", "weighted", steps=4, integration="riemann_middle")
    got = np.load(npz)["maps/integrated_gradients/weighted"]
    np.testing.assert_allclose(got, ref.maps.numpy(), rtol=1e-5, atol=1e-7)
    capsys.readouterr()
    assert run(["explain", str(photo), "--method", "gradcam", "--steps", "4", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --steps is not an option of gradcam"
    assert run(["explain", str(photo), "--method", "lrp", "--composite", "nope", "--out", str(tmp_path / "g.png")]) == 2
    assert "unknown LRP composite 'nope'" in capsys.readouterr().err


def test_cli_names_are_the_registries() -> None:
    from classcontrast.cli.options import CONTRAST_NAMES, METHOD_NAMES

    assert set(METHOD_NAMES) == set(cc.METHODS) and tuple(CONTRAST_NAMES) == tuple(cc.CONTRASTS)
