"""The explorer page: quantisation, size, and the page itself in a real browser (Chromium)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from tools.browser import Browser

import classcontrast as cc
from classcontrast.explorer.encode import dequantise, fit, quantise
from classcontrast.explorer.notebook import explanations_html
from classcontrast.explorer.page import NAMED, entry, image_entry, page
from tests.test_audit import _not_blank
from tests.test_cli import run

VIEW = "document.querySelector('.cc-viewer').dataset.view"


def test_named_contrasts_are_the_registry() -> None:
    from classcontrast.explorer.page import PEERS

    assert tuple(cc.CONTRASTS) == (*NAMED, *PEERS)  # the paper's five by default; the peers' when asked


def test_quantisation_keeps_zero_and_sign_and_half_a_step() -> None:
    g = np.random.default_rng(0)
    maps = g.normal(size=(3, 4, 9, 7)) * g.uniform(0.01, 100, size=(3, 4, 1, 1))
    maps[1, 2] = 0.0
    codes, scales = quantise(maps)
    assert codes.dtype == np.uint8 and scales[1, 2] == 0 and (codes[1, 2] == 127).all()
    back = dequantise(codes, scales)
    assert np.all(np.abs(back - maps) <= scales[..., None, None] / 254 + 1e-12)
    assert np.all((back > 0) <= (maps > 0))  # never the wrong colour


def test_fit_averages_large_maps_only() -> None:
    small = torch.randn(2, 3, 14, 14)
    assert fit(small) is small
    big = torch.randn(2, 3, 224, 224)
    out = fit(big)
    assert out.shape == (2, 3, 56, 56)  # 4×4 blocks
    torch.testing.assert_close(out[..., 3, 5], big[..., 12:16, 20:24].mean((-2, -1)))
    torch.testing.assert_close(out.mean((-2, -1)), big.mean((-2, -1)), rtol=1e-4, atol=1e-6)
    odd = torch.randn(1, 1, 130, 97)
    assert max(fit(odd).shape[-2:]) <= 64


def test_a_100_image_page_fits_the_size_budget() -> None:
    """Worst case: input-space maps of pure noise (incompressible), stored as the page stores them, 5 classes
    × 10 contrasts, two methods, noise images (incompressible JPEGs): under ~30 MB for 100 images."""
    g = np.random.default_rng(0)
    img = image_entry(torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0)), "noise")
    entries = [entry(f"e{i}", "i0", "x", [0, 1, 2, 3, 4], [0.2] * 5,
                     {"gradient": fit(torch.from_numpy(g.normal(size=(5, 10, 224, 224)))).numpy(),
                      "gradcam": g.normal(size=(5, 10, 7, 7)).astype(np.float32)}) for i in range(10)]
    images = {f"i{k}": img for k in range(100)}
    size10 = len(page({"kind": "explain", "classes": ["a"] * 1000, "images": images, "entries": entries}))
    images_only = len(page({"kind": "explain", "classes": ["a"] * 1000, "images": images, "entries": []}))
    per_entry = (size10 - images_only) / 10
    assert images_only + 100 * per_entry < 30e6, f"{(images_only + 100 * per_entry) / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def explain_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("page")
    for name in ("chelsea", "coffee"):
        cc.sample_image(name).save(d / f"{name}.png")
    out = d / "why.html"
    assert run(["explain", str(d / "chelsea.png"), str(d / "coffee.png"), "--method", "gradcam", "gradient",
                "--top-k", "3", "--out", str(d / "why.png"), "--html", str(out)]) == 0
    return out


def _data(path: Path) -> dict:
    html = path.read_text()
    start = html.index('type="application/json"')
    return json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])


def test_explain_page_in_a_real_browser(explain_page: Path) -> None:
    data = _data(explain_page)
    first = data["entries"][0]
    with Browser() as b:
        b.open(explain_page.as_uri())
        assert b.eval(VIEW) == "entry"
        # the controls are there
        count = "document.querySelectorAll('[data-control=\"%s\"]').length"
        assert b.eval(count % "target") == 3 and b.eval(count % "method") == 2
        assert b.eval(count % "contrast") == 5 + 2  # five named contrasts, two foils among the top 3
        assert b.eval(count % "opacity") == 1 and b.eval(count % "scale-shared") == 1
        assert b.eval("document.querySelector('.cc-barlabels').textContent").startswith("against t")
        assert "for t" in b.eval("document.querySelector('.cc-barlabels').textContent")
        start = b.settled()
        # mouse: a foil, then another target (t rather than t does not exist: back to weighted), then original
        pressed = "document.querySelector('[data-control=contrast][aria-pressed=true]').dataset.value"
        b.click(f'button[data-control="contrast"][data-value="foil:{first["targets"][1]}"]')
        foil = b.settled()
        b.click(f'button[data-control="target"][data-value="{first["targets"][1]}"]')
        other = b.settled()
        assert b.eval(pressed) == "weighted"
        b.click('button[data-control="contrast"][data-value="original"]')
        original = b.settled()
        assert len({start, foil, other, original}) == 4
        # keyboard: next contrast, next target, next image, back
        b.key("c")
        assert b.settled() != original and b.eval(pressed) == "mean"
        b.key("ArrowDown")
        b.settled()
        b.key("ArrowRight")
        b.settled()
        assert b.eval("document.querySelector('.cc-panel b').textContent") == data["entries"][1]["title"]
        b.key("ArrowLeft")
        b.settled()
        # opacity and the shared scale change the drawing too
        before = b.settled()
        b.key("+")
        assert b.settled() != before
        b.click('button[data-control="scale-shared"]')
        b.settled()
        assert b.eval("document.querySelector('[data-control=scale-shared]').getAttribute('aria-pressed')") == "true"
        # the decoded map equals the Python side's codes
        got = b.eval("""(async () => { const v = ClassContrastViewer.instances[0];
            const e = v.entries.get('e0'); const t = await v.tile(e, 'gradcam', e.targets[0], 'weighted');
            return Array.from(t.values); })()""")
        shot = b.screenshot()
        urls = b.requests()
    m = first["methods"]["gradcam"]
    from base64 import b64decode
    from io import BytesIO

    from PIL import Image

    codes = np.asarray(Image.open(BytesIO(b64decode(m["atlas"].split(",", 1)[1]))))
    c = m["contrasts"].index("weighted")
    tile = codes[: m["th"], c * m["tw"] : (c + 1) * m["tw"]]
    np.testing.assert_allclose(np.array(got).reshape(tile.shape), dequantise(tile, np.array(m["scales"][0][c])),
                               rtol=1e-6, atol=1e-9)
    assert urls and all(u == explain_page.as_uri() or u.startswith("data:") for u in urls), urls
    _not_blank(shot)


def test_jupyter_viewers_are_independent(tmp_path: Path, embedded: cc.ModelBundle) -> None:
    """Two explanations rendered on one page (as two notebook outputs) work side by side."""
    x = torch.stack([embedded.transform(cc.sample_image(n)) for n in ("chelsea", "rocket")])
    a = cc.explain(embedded, x, "gradcam", ["original", "weighted", cc.Foil(281)], cc.TopK(2))
    single = cc.explain(embedded, x, "xgradcam", "max", cc.TopK(2))
    assert explanations_html(a) is not None and explanations_html(single) is not None
    path = tmp_path / "notebook.html"
    path.write_text(f"<!doctype html><html><body>{explanations_html(a)}<hr>{explanations_html(single)}</body></html>")
    with Browser() as b:
        b.open(path.as_uri(), ready="document.querySelectorAll('[data-ready=\"1\"]').length === 2")
        assert b.eval("ClassContrastViewer.instances.length") == 2
        ids = b.eval("[...document.querySelectorAll('.cc-viewer')].map(v => v.id)")
        assert len(set(ids)) == 2
        labels = b.eval(f"[...document.getElementById({json.dumps(ids[0])}).querySelectorAll("
                        "'[data-control=contrast]')].map(x => x.textContent)")
        assert labels == ["original", "weighted", "rather than tabby"]
        assert b.eval(f"document.getElementById({json.dumps(ids[1])}).querySelectorAll("
                      "'[data-control=contrast]').length") == 1
        before = b.eval(f"document.getElementById({json.dumps(ids[1])}).dataset.fingerprint")
        b.click(f"#{ids[0]} button[data-control='contrast'][data-value='weighted']")
        b.wait(f"document.getElementById({json.dumps(ids[0])}).dataset.ready === '1'")
        assert b.eval(f"document.getElementById({json.dumps(ids[1])}).dataset.fingerprint") == before
    assert explanations_html(a["weighted"].replace(inputs=None)) is None  # no inputs kept: the plain repr


def test_jupyter_shows_a_result_as_the_explorer(tiny: torch.nn.Module, tiny_x: torch.Tensor) -> None:
    """In IPython the package registers the explorer with the display formatter (the result imports no viewer):
    an Explanation and Explanations display as it; without inputs, the plain repr."""
    import importlib

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        importlib.reload(cc)  # imported while the shell runs, as in a notebook
        results = cc.explain(tiny, tiny_x, "gradient", ["original", cc.Foil(1)], cc.TopK(2))
        for shown, title in ((results, "gradient: original, foil:1"), (results["original"], "gradient: original")):
            data, _ = shell.display_formatter.format(shown)
            assert "cc-viewer" in data["text/html"] and f'"title":"{title}"' in data["text/html"]
        data, _ = shell.display_formatter.format(results["original"].replace(inputs=None))
        assert "text/html" not in data and "text/plain" in data
    finally:
        InteractiveShell.clear_instance()


def test_plot_explanations_has_the_labelled_colour_bar(tmp_path: Path, embedded: cc.ModelBundle) -> None:
    x = embedded.transform(cc.sample_image("coffee"))[None]
    ex = cc.explain(embedded, x, "gradcam", ["original", "weighted"], cc.TopK(2))
    fig = cc.plot_explanations(embedded.normalize.inverse(x), dict(ex), embedded.categories, scale="figure",
                               path=tmp_path / "f.png")
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    assert any(lab.startswith("against t") for lab in labels) and any(lab.startswith("for t") for lab in labels)
    from classcontrast.viz import halfrange

    half = halfrange(np.stack([e.maps.numpy() for e in ex.values()]))
    assert any(f"{half:.3g}" in lab for lab in labels)  # a shared scale shows its value


def test_halfrange_ignores_a_few_extreme_pixels() -> None:
    from classcontrast.viz import halfrange

    smooth = np.linspace(-2, 3, 10_000)
    assert halfrange(smooth) == pytest.approx(3.0, rel=0.01)  # smooth maps: ≈ max |value|, as the study
    spiky = np.concatenate([np.random.default_rng(0).uniform(-1, 1, 10_000), [500.0, -800.0]])
    assert halfrange(spiky) < 1.0  # two outliers do not set the scale
    assert halfrange(np.zeros(5)) == 1.0


def test_per_channel_maps_are_drawn_as_the_map_without_keep_channels(tiny: torch.nn.Module, tiny_x: torch.Tensor,
                                                                     tmp_path: Path) -> None:
    """keep_channels gives (B, K, 3, H, W) maps; the figure, the explorer and the notebook viewer draw their
    channel sum, which is the method's map without keep_channels (they used to fail on the extra axis)."""
    from classcontrast.explanation import displayed
    from classcontrast.explorer.compute import explore

    per = cc.explain(tiny, tiny_x, "gradient_x_input", ["original", "weighted"], cc.TopK(2), keep_channels=True)
    plain = cc.explain(tiny, tiny_x, "gradient_x_input", ["original", "weighted"], cc.TopK(2))
    assert per["weighted"].maps.shape == (3, 2, 3, 12, 12)
    torch.testing.assert_close(displayed(per["weighted"].maps), plain["weighted"].maps)
    classes = plain["weighted"].targets
    drawn, _, _ = explore(tiny, tiny_x, ["gradient_x_input"], classes, keep_channels=True)
    expected, _, _ = explore(tiny, tiny_x, ["gradient_x_input"], classes)
    torch.testing.assert_close(drawn["gradient_x_input"], expected["gradient_x_input"])
    assert explanations_html(per) and explanations_html(per["weighted"])
    pixels = list(torch.rand(3, 3, 12, 12))
    for name, ex in (("per", per), ("plain", plain)):
        cc.plot_explanations(pixels, dict(ex), path=tmp_path / f"{name}.png")
    assert (tmp_path / "per.png").read_bytes() == (tmp_path / "plain.png").read_bytes()


def test_explain_cli_with_keep_channels_writes_figure_page_and_per_channel_arrays(tmp_path: Path) -> None:
    assert run(["explain", "--method", "gradient", "--keep-channels", "--top-k", "1", "--out", str(tmp_path / "w.png"),
                "--html", str(tmp_path / "w.html"), "--save-maps", str(tmp_path / "w.npz")]) == 0
    with np.load(tmp_path / "w.npz") as z:
        assert z["maps/gradient/original"].shape == (1, 1, 3, 224, 224)
    assert (tmp_path / "w.png").stat().st_size > 0 and "<html" in (tmp_path / "w.html").read_text()[:500].lower()


def test_a_classifiers_page_and_figure_share_one_call_per_method(tiny: torch.nn.Module, tiny_x: torch.Tensor) -> None:
    """The page of a classifier's top classes explains the figure's targets under the figure's contrasts and its own
    (every named contrast, a foil for each target) in one call per method: the figure from those results equals its
    own call; the page's entries offer each image's targets, the foils among them and the user's."""
    from classcontrast.cli.explain_run import _asked
    from classcontrast.explorer.offers import PageRequest, offered_groups
    from classcontrast.explorer.render import page_data

    asked = (cc.get_contrast("weighted"), cc.Foil(4))
    req = PageRequest(("gradient", "gradcam"), foils=(4,), asked=asked)
    groups = offered_groups(tiny, tiny_x, req, cc.TopK(2), ["a", "b", "c"], batch_size=2)
    assert [g.first for g in groups] == [0, 2] and all(g.asked is not None for g in groups)
    figure = dict(_asked(groups, list(req.methods), list(asked), types.SimpleNamespace(categories=None)))
    for method in req.methods:
        own = cc.explain(tiny, tiny_x, method, list(asked), cc.TopK(2))
        for key in own:
            torch.testing.assert_close(figure[(method, key)].maps, own[key].maps)
    data = page_data(groups, "t", "")
    assert [e["id"] for e in data["entries"]] == ["e0", "e1", "e2"]
    for e, targets in zip(data["entries"], own["weighted"].targets.tolist(), strict=True):
        contrasts = e["methods"]["gradient"]["contrasts"]
        assert e["targets"] == targets and contrasts[:5] == list(NAMED)
        assert contrasts[5:] == [f"foil:{c}" for c in dict.fromkeys([*targets, 4])]
        assert e["default"] == {"target": targets[0], "contrast": "foil:4"}
