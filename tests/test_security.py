"""Trustworthy under attack and misuse: no foreign code runs, no shared model is corrupted, no page or
spreadsheet runs an injected name, and outputs never destroy inputs."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tools.browser import Browser
from torch import nn

import classcontrast as cc
from classcontrast.explorer.notebook import explanations_html
from classcontrast.models import ModelBundle, Normalize
from classcontrast.models.preprocess import Preprocess
from tests.conftest import TinyCNN, randomize_bn
from tests.test_cli import run
from tests.test_hygiene import _assert_untouched, _snapshot

# ----------------------------------------------------------------------------------------------------------
# LRP and plain forward passes on one model, in many threads


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(TinyCNN(num_classes=5, width=8)).eval()


CNN_METHODS = ["gradient", "gradient_x_input", "linear_approx", "gradcam", "xgradcam", "fullgrad",
               "integrated_gradients", "smoothgrad", "lrp"]
OPTIONS = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 4}}


def test_plain_forwards_and_every_method_in_threads_get_lone_call_results() -> None:
    """N threads run plain forwards, M threads explain with every method (LRP's canonizer merges BatchNorm
    into the weights): every forward equals its reference, every map its lone call, the model is untouched."""
    model = _bn_net()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    before = _snapshot(model)
    with torch.no_grad():
        reference_logits = model(x)
    lone = {m: cc.explain(model, x, m, ["weighted", "original"], cc.TopK(2), **OPTIONS.get(m, {}))
            for m in CNN_METHODS}
    bad_forwards: list[float] = []
    bad_maps: list[str] = []
    stop = time.monotonic() + 8

    def forwards() -> None:
        while time.monotonic() < stop:
            with torch.no_grad():
                y = model(x)
            if not torch.equal(y, reference_logits):
                bad_forwards.append(float((y - reference_logits).abs().max()))

    def explains(offset: int) -> None:
        for i in range(2 * len(CNN_METHODS)):
            m = CNN_METHODS[(i + offset) % len(CNN_METHODS)]
            got = cc.explain(model, x, m, ["weighted", "original"], cc.TopK(2), **OPTIONS.get(m, {}))
            for name in got:
                if not torch.equal(got[name].maps, lone[m][name].maps):
                    bad_maps.append(f"{m}/{name}")

    threads = [threading.Thread(target=forwards) for _ in range(3)]
    threads += [threading.Thread(target=explains, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not bad_forwards, f"{len(bad_forwards)} plain forwards were disturbed (max error {max(bad_forwards)})"
    assert not bad_maps, bad_maps
    _assert_untouched(model, before)


def test_lrp_never_changes_the_callers_parameters() -> None:
    model = _bn_net()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[bool] = []

    def check(module: nn.Module, args: object, out: object) -> None:  # runs inside the call
        seen.append(all(torch.equal(model.state_dict()[k], params[k]) for k in params))

    handle = model.features[0].register_forward_hook(check)
    try:
        cc.explain(model, torch.randn(1, 3, 16, 16), "lrp", "weighted")
    finally:
        handle.remove()
    assert all(torch.equal(model.state_dict()[k], params[k]) for k in params)
    assert seen and all(seen)  # while the rules ran (on a private copy), the caller's weights were its own


# ----------------------------------------------------------------------------------------------------------
# Foreign code: checkpoints and Hugging Face folders


class _Payload:
    """A pickle that creates a file when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_resume_refuses_a_crafted_checkpoint_without_running_it(tmp_path: Path) -> None:
    from classcontrast.data.sources import Sample, SampleSource
    from classcontrast.training import Recipe, train

    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": _Payload(marker), "epoch": 1}, out / "last.pth")
    bundle = ModelBundle(_bn_net(), Preprocess(16), Normalize((0.5,) * 3, (0.5,) * 3), [str(i) for i in range(5)])
    source = SampleSource([Sample("a", lambda: Image.new("RGB", (16, 16)), 0)], "labels", "one image")
    with pytest.raises(cc.ClassContrastError, match="not a usable checkpoint"):
        train(bundle, source, source, out, Recipe(epochs=1, batch_size=1, image_size=16), resume=True)
    assert not marker.exists()


def test_hf_folder_with_remote_code_is_refused_at_once(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "remote"
    cfg = transformers.ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=16, num_labels=2)
    transformers.ViTForImageClassification(cfg).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    marker = tmp_path / "pwned"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageClassification": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    start = time.monotonic()
    with pytest.raises(cc.ClassContrastError, match=r"--trust-remote-code"):
        cc.load_model(f"hf:{folder}")
    assert time.monotonic() - start < 5 and not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - whatever fails after the opt-in, the folder's code ran
        cc.load_model(f"hf:{folder}", trust_remote_code=True)
    assert marker.exists()


# ----------------------------------------------------------------------------------------------------------
# Images that would exhaust memory


def test_a_thin_image_is_refused_before_resizing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    thin = tmp_path / "thin.png"
    Image.new("RGB", (50_000, 1), (200, 10, 10)).save(thin)
    assert thin.stat().st_size < 2000
    with pytest.raises(cc.ClassContrastError, match="aspect ratio"):
        Preprocess(256, 224)(cc.load_image(thin))
    start = time.monotonic()
    assert run(["explain", str(thin), "--out", str(tmp_path / "why.png")]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 20
    assert err.count("\n") == 1 and "thin.png" in err and "aspect ratio" in err


# ----------------------------------------------------------------------------------------------------------
# Hostile names in pages, spreadsheets and the terminal

HOSTILE = ["<!--<script>", "</script><script>window.pwned=1</script>", "<img src=x onerror=window.pwned=2>",
           "=HYPERLINK(\"http://x\")", "\u2028line\u2029", "&amp;<b>bold</b>"]


@pytest.fixture(scope="module")
def hostile_bundle() -> ModelBundle:
    return ModelBundle(_bn_net(), Preprocess(32), Normalize((0.5,) * 3, (0.5,) * 3), HOSTILE[:5], name=HOSTILE[0])


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    g = np.random.default_rng(0)
    for i, name in enumerate(["<!--<script>a", "<img src=x onerror=window.pwned=3>", "=1+2", "@SUM(A1)", "-3+4"]):
        Image.fromarray(g.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{name}{i}.png")
    return root


def _check_page(path: Path, expect_text: str) -> None:
    with Browser() as b:
        b.open(path.as_uri(), ready="document.readyState === 'complete'")
        time.sleep(0.3)
        assert b.eval("typeof window.pwned") == "undefined"
        assert expect_text in b.eval("document.body.innerText")
        if b.eval("document.querySelector('.cc-viewer') !== null"):
            b.settled()  # the viewer's own script ran and rendered


def test_hostile_names_in_the_audit_page_and_csv(hostile_bundle: ModelBundle, hostile_folder: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "audit"
    cc.audit(hostile_bundle, str(hostile_folder), out, pairs=2, examples=1, top_k=1, batch_size=8)
    _check_page(out / "audit.html", "<!--<script>")
    html = (out / "audit.html").read_text()
    assert "'unsafe-inline'; connect" not in html and "script-src 'sha256-" in html
    import csv

    rows = list(csv.reader((out / "confusion.csv").open(encoding="utf-8")))
    cells = [c for row in rows for c in row]
    assert "'=HYPERLINK(\"http://x\")" in cells and not any(c[:1] in "=+@" for c in cells if c)


def test_hostile_names_in_the_explain_page_and_terminal(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "\x1b[31mred[bold]x[red]<!--<script>.png"
    cc.sample_image("coffee").resize((64, 64)).save(img)
    page = tmp_path / "page.html"
    assert run(["explain", str(img), "--out", str(tmp_path / "why.png"), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "[bold]x[red]" in out
    _check_page(page, "[bold]x[red]<!--<script>")


def test_hostile_names_in_the_notebook_view(hostile_bundle: ModelBundle, tmp_path: Path) -> None:
    ex = cc.explain(hostile_bundle, torch.rand(1, 3, 32, 32), "gradcam", ["weighted", "original"], cc.TopK(2))
    page = tmp_path / "notebook.html"
    page.write_text(f"<!doctype html><html><body>{explanations_html(ex)}</body></html>")
    _check_page(page, "</script><script>window.pwned=1</script>")


def test_hostile_names_in_the_report(tmp_path: Path) -> None:
    from classcontrast.reproduce.report import Block, write_report

    blocks = [Block("h2", HOSTILE[2]), Block("p", HOSTILE[1]), Block("table", [["a", "b"], [HOSTILE[2], "**x**"]])]
    paths = write_report(blocks, tmp_path, HOSTILE[0])
    _check_page(paths[1], HOSTILE[1])


# ----------------------------------------------------------------------------------------------------------
# Outputs never destroy inputs


def test_explain_refuses_to_overwrite_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "img.png"
    cc.sample_image("coffee").resize((64, 64)).save(img)
    data = img.read_bytes()
    assert run(["explain", str(img), "--out", str(img)]) == 2
    assert "input" in capsys.readouterr().err and img.read_bytes() == data


def test_an_output_folder_inside_the_data_is_not_data(embedded: cc.ModelBundle, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for cls, photo in (("tiger cat", "chelsea"), ("cup", "coffee")):
        (data / cls).mkdir(parents=True)
        cc.sample_image(photo).resize((120, 90)).save(data / cls / f"{photo}.png")
    out = data / "report"
    args = ["audit", str(data), "--out", str(out), "--pairs", "1", "--examples", "1"]
    assert run(args) == 0
    (out / "stray.png").write_bytes((data / "cup" / "coffee.png").read_bytes())  # an image among the outputs
    first = json.loads((out / "audit.json").read_text())["n"]
    assert run(args) == 0, capsys.readouterr().err
    assert json.loads((out / "audit.json").read_text())["n"] == first == 2


def test_train_refuses_a_folder_holding_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "last.pth").write_bytes(b"a run")
    assert run(["train", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err and (tmp_path / "last.pth").read_bytes() == b"a run"


@pytest.mark.parametrize("name", ["..", "../escape", "/tmp/abs", "a/b"])
def test_reproduce_names_stay_inside_out(name: str, tmp_path: Path) -> None:
    from classcontrast.reproduce import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[experiment]]\nkind = "norm_logit"\nname = {json.dumps(name)}\n')
    with pytest.raises(cc.ClassContrastError, match="plain folder name"):
        load_config(cfg)


# ----------------------------------------------------------------------------------------------------------
# Corrupt caches are recomputed


def test_corrupt_rows_and_maps_are_recomputed(embedded: cc.ModelBundle, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for photo in ("chelsea", "coffee", "rocket"):
        cc.sample_image(photo).resize((120, 90)).save(data / f"{photo}.png")
    kwargs = {"pairs": 2, "examples": 1, "top_k": 1, "batch_size": 2}
    clean = cc.audit(embedded, str(data), tmp_path / "clean", **kwargs)
    used = tmp_path / "used"
    cc.audit(embedded, str(data), used, **kwargs)
    with (used / "audit_samples.jsonl").open("a") as fh:  # JSON that is not a row, rows lacking fields
        fh.write('[1, 2]\n"text"\n{}\n{"id": "coffee.png"}\n')
    for f in (used / "maps").glob("*.npz"):
        f.write_bytes(f.read_bytes()[:100])  # truncated
    (used / "maps" / "batch_00000.npz").write_bytes(b"")  # empty
    again = cc.audit(embedded, str(data), used, **kwargs)
    assert (used / "audit.json").read_bytes() == (tmp_path / "clean" / "audit.json").read_bytes()
    for e, got in again.maps.items():
        for m, arr in got["maps"].items():
            np.testing.assert_array_equal(arr, clean.maps[e]["maps"][m])


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    from classcontrast.data.sources import Sample

    missing = tmp_path / "gone.png"
    with pytest.raises(cc.ClassContrastError, match=r"gone\.png"):
        Sample("gone", lambda: Image.new("RGB", (1, 1)), None, str(missing)).stamp()
    assert os.fspath(missing)


def test_a_file_name_that_is_not_utf8(embedded: cc.ModelBundle, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Shown with escapes in the terminal and figure, kept in the JSON, no traceback anywhere."""
    name = os.fsdecode(b"caf\xe9.png")
    data = tmp_path / "data"
    data.mkdir()
    cc.sample_image("coffee").resize((80, 60)).save(data / name)
    cc.sample_image("chelsea").resize((80, 60)).save(data / "cat.png")
    assert run(["explain", str(data / name), "--out", str(tmp_path / "out" / "why.png"),
                "--html", str(tmp_path / "out" / "page.html")]) == 0
    assert "caf\\xe9.png" in capsys.readouterr().out
    assert run(["audit", str(data), "--out", str(tmp_path / "audit"), "--pairs", "1", "--examples", "1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "audit" / "audit_samples.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rows} == {name, "cat.png"}  # the name kept exactly, bytes and all
    json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert (tmp_path / "audit" / "audit.html").stat().st_size > 0
    import pyarrow.parquet as pq

    ids = set(pq.read_table(tmp_path / "audit" / "audit.parquet", columns=["id"]).column("id").to_pylist())
    assert ids == {"caf\\xe9.png", "cat.png"}  # Parquet holds UTF-8: the byte written as the terminal shows it
