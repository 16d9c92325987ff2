"""Contrastive concept relevance against independent references: zennit's own attributor with the layer's relevance
read (channel relevances) or masked to one channel (CRP's conditional heatmaps, as zennit-crp's ``CondAttribution``
computes them), GradCAM's terms written out, the paper's identity channel by channel over every class, and the sum
over all channels equal to the unconditioned map — for every contrast, on a CNN and on the embedded model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import classcontrast as cc

from .reference import relerr
from .test_cli import run

CONTRASTS = ("original", "mean", "max", "weighted", "probability", "foil")
FOIL = 4


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                         nn.Linear(72, 6)).double().eval()


def _x(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _contrast(name: str) -> object:
    return cc.Foil(FOIL) if name == "foil" else name


def _zennit_layer(model: nn.Module, x: torch.Tensor, layer: nn.Module, contrast: object, t: torch.Tensor,
                  channels: torch.Tensor | None, canonizers: list) -> tuple[torch.Tensor, torch.Tensor]:
    """zennit's Gradient attributor (EpsilonPlusFlat) on a copy of ``model``, the output relevance the contrast's
    gradient (by autograd of its score): (the relevance reaching the layer's output, the input relevance summed over
    colour channels) — with ``channels`` (B,), the layer's relevance first masked to that channel of each image."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    net = copy.deepcopy(model)
    where = dict(net.named_modules())[next(n for n, m in model.named_modules() if m is layer)]
    c = cc.get_contrast(contrast)
    seen: list[torch.Tensor] = []

    def initial(out: torch.Tensor) -> torch.Tensor:
        y = out.detach().requires_grad_(True)
        return torch.autograd.grad(c.score(y, t).sum(), y)[0]

    def mask(g: torch.Tensor) -> torch.Tensor:
        seen.append(g)
        if channels is None:
            return g
        keep = torch.zeros_like(g)
        rows = torch.arange(g.shape[0])
        keep[rows, channels] = g[rows, channels]
        return keep

    with Gradient(model=net, composite=EpsilonPlusFlat(canonizers=canonizers)) as attributor:
        hook = where.register_forward_hook(lambda m, i, o: o.register_hook(mask) and None)
        try:
            relevance = attributor(x, initial)[1]
        finally:
            hook.remove()
    return seen[0], relevance.sum(1)


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_lrp_concepts_equal_zennits_relevance_at_the_layer_and_crps_conditional_heatmaps(contrast: str) -> None:
    model, x = _cnn(), _x()
    got = cc.concepts(model, x, _contrast(contrast), cc.TopK(2), layer="2", method="lrp", top=3)
    for k in range(2):
        t = got.targets[:, k]
        at_layer, _ = _zennit_layer(model, x, model[2], _contrast(contrast), t, None, [])
        assert relerr(got.relevance[:, k], at_layer.flatten(2).sum(-1)) < 1e-10
        for r in range(3):
            _, heat = _zennit_layer(model, x, model[2], _contrast(contrast), t, got.channels[:, k, r], [])
            assert relerr(got.heatmaps[:, k, r], heat) < 1e-10
    assert torch.equal(got.channels, got.relevance.topk(3, 2).indices)  # the most relevant, best first


@pytest.mark.parametrize("method", ["lrp", "gradcam"])
@pytest.mark.parametrize("contrast", CONTRASTS)
def test_all_channels_sum_to_the_map(method: str, contrast: str) -> None:
    """Conservation at the layer: the conditional heatmaps of all 8 channels sum to the method's map."""
    model, x = _cnn(), _x()
    got = cc.concepts(model, x, _contrast(contrast), cc.TopK(2), layer="4", method=method, top=8)
    ex = cc.explain(model, x, method, _contrast(contrast), cc.TopK(2), **({"layer": "4"} if method == "gradcam"
                                                                           else {}))
    assert relerr(got.heatmaps.sum(2), ex.maps) < 1e-10
    torch.testing.assert_close(got.share.abs().sum(2), torch.ones(2, 2, dtype=torch.float64))


def test_gradcam_concepts_are_the_weighted_activations() -> None:
    """R_c = Σ w_c A_c, w_c the spatial mean of the foil contrast's gradient at the layer (autograd, written out);
    the heatmap w_c A_c upsampled linearly."""
    model, x = _cnn(), _x()
    got = cc.concepts(model, x, cc.Foil(FOIL), 1, layer="2", method="gradcam", top=2)
    store: list[torch.Tensor] = []
    hook = model[2].register_forward_hook(lambda m, i, o: store.append(o))
    try:
        y = model(x)
    finally:
        hook.remove()
    (g,) = torch.autograd.grad((y[:, 1] - y[:, FOIL]).sum(), store[0])
    terms = g.mean((2, 3))[..., None, None] * store[0].detach()
    assert relerr(got.relevance[:, 0], terms.sum((2, 3))) < 1e-12
    rows = torch.arange(2)
    want = torch.nn.functional.interpolate(terms[rows, got.channels[:, 0, 1]][:, None], size=12, mode="bilinear")
    assert relerr(got.heatmaps[:, 0, 1], want[:, 0]) < 1e-12


@pytest.mark.parametrize("method", ["lrp", "gradcam"])
def test_weighted_concept_relevance_is_t_minus_the_softmax_weighted_others(method: str) -> None:
    """The paper's identity channel by channel: R^weighted_c = R_c(t) − Σ_{s≠t} α_s R_c(s), α the softmax over the
    other classes, from the original contrast's relevance of every class (brute force, 6 calls)."""
    model, x = _cnn(), _x()
    weighted = cc.concepts(model, x, "weighted", 2, layer="2", method=method)
    per_class = torch.stack([cc.concepts(model, x, "original", s, layer="2", method=method).relevance[:, 0]
                             for s in range(6)], 1)  # (B, C classes, channels)
    with torch.no_grad():
        y = model(x)
    alpha = torch.softmax(y.index_fill(1, torch.tensor([2]), float("-inf")), 1)
    want = per_class[:, 2] - (alpha[..., None] * per_class).sum(1)
    assert relerr(weighted.relevance[:, 0], want) < 1e-10


def test_concepts_on_the_embedded_model(embedded64: nn.Module, photo64: torch.Tensor) -> None:
    """The real weights (BatchNorm merged, as the lrp method does), every contrast: LRP concepts at blocks.5 equal
    zennit's relevance at the layer and its masked (CRP) heatmap; GradCAM concepts sum to the GradCAM map; the bundle
    takes class names; the model is left as found."""
    from zennit.canonizers import SequentialMergeBatchNorm

    x = torch.nn.functional.interpolate(photo64, size=96)
    t = torch.tensor([281])
    for contrast in [*CONTRASTS[:-1], cc.Foil(285)]:
        got = cc.concepts(embedded64, x, contrast, 281, layer="blocks.5", top=1)
        at_layer, _ = _zennit_layer(embedded64, x, embedded64.blocks[5], contrast, t, None,
                                    [SequentialMergeBatchNorm()])
        assert relerr(got.relevance[:, 0], at_layer.flatten(2).sum(-1)) < 1e-8
        _, heat = _zennit_layer(embedded64, x, embedded64.blocks[5], contrast, t, got.channels[:, 0, 0],
                                [SequentialMergeBatchNorm()])
        assert relerr(got.heatmaps[:, 0, 0], heat) < 1e-8
        grad = cc.concepts(embedded64, x, contrast, 281, layer="blocks.5", method="gradcam", top=192)  # every channel
        ex = cc.explain(embedded64, x, "gradcam", contrast, 281, layer="blocks.5")
        assert relerr(grad.heatmaps.sum(2), ex.maps) < 1e-10
    bundle = cc.load_model()
    named = cc.concepts(bundle, bundle.transform(cc.sample_image("chelsea"))[None], cc.Foil("Egyptian cat"),
                        "tiger cat", layer="blocks.5", method="gradcam", top=3)
    assert named.contrast == "foil:Egyptian cat" and named.rows()[0]["target_name"] == "tiger cat"
    assert all(not m._forward_hooks and not m._backward_hooks for m in embedded64.modules())


def test_concepts_work_under_no_grad_and_inference_mode() -> None:
    """As explain does: a call inside torch.no_grad() or torch.inference_mode(), on a tensor made there, gives the
    concepts of a plain call."""
    model, x = _cnn(), _x()
    want = cc.concepts(model, x, "weighted", 1, layer="2", top=2)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            inside = x.clone()
            got = cc.concepts(model, inside, "weighted", 1, layer="2", top=2)
        torch.testing.assert_close(got.heatmaps, want.heatmaps)


def test_bad_input_is_one_line() -> None:
    model, x = _cnn(), _x()
    for kwargs, words in (({"layer": "nope"}, "nope"), ({"layer": "2", "method": "rise"}, "method must be"),
                          ({"layer": "2", "top": 0}, "top must be"), ({"layer": "7"}, "feature map")):
        with pytest.raises(cc.ClassContrastError, match=words):
            cc.concepts(model, x, "weighted", **kwargs)


def test_the_figure_draws_the_concepts_and_explain_writes_it(tmp_path, embedded: cc.ModelBundle) -> None:
    """plot_concepts titles each heatmap with its channel and share; ``explain --concepts 2`` writes the figure beside
    the maps' — a row per target × contrast — for the targets the maps explain; bad values are one line."""
    from PIL import Image


    x = embedded.transform(cc.sample_image("coffee"))[None]
    got = cc.concepts(embedded, x, ["weighted", cc.Foil("cup")], cc.TopK(2), layer="bn2", method="gradcam", top=2)
    fig = cc.plot_concepts(embedded.normalize.inverse(x), got, embedded.categories)
    titles = [ax.get_title() for ax in fig.axes]
    c = got["foil:cup"]
    assert f"channel {int(c.channels[0, 1, 0])} · {float(c.share[0, 1, 0]):+.0%}" in titles and len(fig.axes) == 12

    photo = tmp_path / "espresso.jpg"
    cc.sample_image("coffee").save(photo)
    out = tmp_path / "why.png"
    assert run(["explain", str(photo), "--top-k", "2", "--contrast", "weighted", "--foil", "cup", "--concepts", "2",
                "--concept-method", "gradcam", "--out", str(out), "-q"]) == 0
    with Image.open(tmp_path / "why_concepts.png") as im:
        assert im.size[1] > 4 * 200  # four rows: two targets, two contrasts
    page = tmp_path / "why.html"
    assert run(["explain", str(photo), "--concepts", "1", "--concept-method", "gradcam", "--out", str(out),
                "--html", str(page), "-q"]) == 0
    text = page.read_text()
    assert "<figcaption>concepts: espresso.jpg</figcaption>" in text and 'src="data:image/png;base64,' in text
    from classcontrast.explorer.page import figures

    assert figures([{"title": "x", "src": "https://example.org/a.png"}]) == ""  # the page requests nothing
    assert run(["explain", str(photo), "--concepts", "2", "--concept-method", "rise", "--out", str(out)]) == 2


def test_trained_digits_concepts_lie_where_3_and_8_differ_and_the_atlas_shows_3s_and_8s(tmp_path) -> None:
    """Three training seeds of the digits CNN, "3 rather than 8" at features.5 on the held-out 3s: the top three
    concepts' heatmaps put their positive mass where the mean 3 and the mean 8 differ most (the top quarter of
    pixels) at least 1.25 times as much as the pixels' share, more than the middle-ranked channels (about 1) and far
    more than the last ones; the atlas over all 497 held-out digits shows mostly 3s and 8s as references."""
    from .digits_concepts import check

    for seed in range(3):
        got = check(seed, tmp_path / str(seed))
        assert got["rather than 8"] > 1.25 and got["rather than 8"] > got["middle"] + 0.2 > got["last"] + 0.4, got
        assert got["references 3 or 8"] >= 0.75, got


def test_the_atlas_command_resumes_and_its_page_is_the_json(tmp_path, embedded: cc.ModelBundle) -> None:
    """``classcontrast concepts`` on six bundled views: atlas.json's concepts are the channels of highest mean
    relevance, each reference's relevance equals cc.concepts on that image, its crop and heatmap are files the page
    shows; a second run reuses every part; another layer in the same folder, no target, a bad crop: one line."""
    import json

    import pyarrow.parquet as pq

    from classcontrast.data.specs import open_source

    out = tmp_path / "atlas"
    argv = ["concepts", "--target", "tiger cat", "--foil", "Egyptian cat", "--layer", "blocks.5", "--method",
            "gradcam", "--concepts", "2", "--references", "2", "--limit", "6", "--out", str(out)]
    assert run(argv) == 0
    atlas = json.loads((out / "atlas.json").read_text())
    parts = sorted((out / "relevance").glob("part-*.parquet"))
    table = pq.read_table(parts).to_pydict() if len(parts) == 1 else None
    assert atlas["images"] == 6 and len(atlas["concepts"]) == 2 and atlas["foil_name"] == "Egyptian cat"
    ref = atlas["concepts"][0]["references"][0]
    sample = next(s for s in open_source(None, embedded.categories).select(limit=6, seed=0) if s.id == ref["id"])
    x = sample.prepared(embedded.transform)[None]
    c = cc.concepts(embedded, x, cc.Foil("Egyptian cat"), "tiger cat", layer="blocks.5", method="gradcam", top=1)
    assert abs(ref["relevance"] - float(c.relevance[0, 0, atlas["concepts"][0]["channel"]])) < 1e-4
    page = (out / "atlas.html").read_text()
    assert "tiger cat rather than Egyptian cat" in page and ref["crop"] in page and (out / ref["heatmap"]).exists()
    assert table is None or len(table["stamp"]) == 6
    assert run(argv) == 0 and sorted((out / "relevance").glob("part-*.parquet")) == parts  # resumed: nothing new
    assert run([*argv[:6], "blocks.4", *argv[7:]]) == 2  # another run's folder
    assert run(["concepts", "--out", str(tmp_path / "b")]) == 2
    assert run([*argv, "--crop", "2"]) == 2
    audit = tmp_path / "audit"
    audit.mkdir()
    assert run(["concepts", "--audit", str(audit), "--out", str(tmp_path / "c")]) == 2  # no audit.json: one line
    (audit / "audit.json").write_text(json.dumps({"pairs": [{"true": "Egyptian cat", "predicted": "tiger cat",
                                                              "true_index": 285, "predicted_index": 282}]}))
    assert run(["concepts", "--audit", str(audit), "--layer", "blocks.5", "--method", "gradcam", "--limit", "6",
                "--concepts", "1", "--references", "1", "--out", str(tmp_path / "c")]) == 0
    from_audit = json.loads((tmp_path / "c" / "atlas.json").read_text())
    assert (from_audit["target_name"], from_audit["foil_name"]) == ("tiger cat", "Egyptian cat")


def test_the_atlas_relevance_on_ray_equals_the_local_engines(tmp_path, local_ray: object,
                                                            embedded: cc.ModelBundle) -> None:
    """Step 1 of the atlas in Ray workers writes the rows the local engine writes — the same images, predictions and
    channel relevances: the embedded model loaded in each worker from its spec on bundled photos, and the digits CNN
    (a bundle made in Python, sent to the workers) on grey in-memory digits, which keep their one channel."""
    import pyarrow.parquet as pq

    from classcontrast.crp.atlas import AtlasRequest, build_atlas
    from classcontrast.data.specs import open_source
    from classcontrast.scale.workers import Workers

    from .digits import train_digits

    digits, held_out = train_digits(epochs=2)
    cases = [(embedded, open_source(None, embedded.categories).select(limit=4, seed=0),
              AtlasRequest(281, cc.Foil(285), "blocks.5", "gradcam", 2, 2, 0.5, 2,
                           {"model": "efficientnet_lite0", "weights": "DEFAULT"})),
             (digits, held_out.select(limit=12, seed=0),
              AtlasRequest(3, cc.Foil(8), "features.5", "lrp", 2, 2, 1.0, 4))]
    for case, (bundle, source, req) in enumerate(cases):
        tables = {}
        for engine in ("local", "ray"):
            build_atlas(bundle, source, req, tmp_path / f"{case}{engine}", report=lambda line: None,
                        workers=Workers(engine, None, 1, 0.0))
            t = pq.read_table(sorted((tmp_path / f"{case}{engine}" / "relevance").glob("part-*.parquet"))).to_pydict()
            tables[engine] = {s: (p, r) for s, p, r in zip(t["stamp"], t["predicted"], t["relevance"], strict=True)}
        assert tables["ray"].keys() == tables["local"].keys() and len(tables["ray"]) == len(source)
        for stamp, (p, r) in tables["local"].items():
            assert tables["ray"][stamp][0] == p
            assert torch.allclose(torch.tensor(tables["ray"][stamp][1]), torch.tensor(r), rtol=1e-4, atol=1e-6)
