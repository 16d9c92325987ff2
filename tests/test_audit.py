"""The confusion audit on data with known confusions: pairs, counts and maps checked independently."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
import torch

import classcontrast as cc
from classcontrast.data.sources import bundled_source
from classcontrast.explorer.encode import dequantise
from tests.test_cli import run

BIN = Path(sys.executable).parent
# folder name -> bundled views filed under it; "cup" and "space shuttle" are wrong on purpose
# (real espresso and rocket photos filed under a neighbouring class)
LAYOUT = {
    "tiger cat": [f"chelsea/{v}" for v in ("full", "tl", "tr", "bl", "br", "mirror")],
    "cup": [f"coffee/{v}" for v in ("full", "tl", "tr", "bl")],
    "espresso": ["coffee/br", "coffee/mirror"],
    "space shuttle": ["rocket/full", "rocket/tr", "rocket/mirror"],
    "missile": ["rocket/tl", "rocket/br"],
    "daisy": [f"flower/{v}" for v in ("full", "tl", "tr", "bl", "br", "mirror")],
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("confusions")
    views = {s.id: s for s in bundled_source()}
    for cls, ids in LAYOUT.items():
        (root / cls).mkdir()
        for i in ids:
            views[i].load().save(root / cls / f"{i.replace('/', '_')}.png")  # lossless: same pixels, same predictions
    return root


def _independent(bundle: cc.ModelBundle, root: Path) -> list[dict]:
    """Every image's label and prediction by a plain forward pass (no classcontrast code in the path)."""
    rows = []
    for cls in sorted(LAYOUT):
        label = bundle.categories.index(cls)
        for f in sorted((root / cls).iterdir()):
            x = bundle.transform(cc.load_image(f))[None]
            with torch.no_grad():
                p = torch.softmax(bundle.model(x).double(), 1)[0]
            rows.append({"id": f"{cls}/{f.name}", "label": label, "pred": int(p.argmax()), "p": p})
    return rows


@pytest.fixture(scope="module")
def audited(embedded: cc.ModelBundle, folders: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit")
    cc.audit(embedded, str(folders), out, methods=["gradcam", "gradient"], pairs=4, examples=3, batch_size=4)
    return out


def test_pairs_and_counts_match_an_independent_count(embedded: cc.ModelBundle, folders: Path, audited: Path) -> None:
    rows = _independent(embedded, folders)
    report = json.loads((audited / "audit.json").read_text())
    assert report["n"] == len(rows) and report["labelled"]
    assert report["accuracy"] == pytest.approx(sum(r["label"] == r["pred"] for r in rows) / len(rows))
    counts = Counter((r["label"], r["pred"]) for r in rows if r["label"] != r["pred"])
    mean_p = {k: np.mean([float(r["p"][k[1]]) for r in rows if (r["label"], r["pred"]) == k]) for k in counts}
    expected = sorted(counts, key=lambda k: (-counts[k], -mean_p[k], k))[:4]
    got = [(p["true_index"], p["predicted_index"]) for p in report["pairs"]]
    assert got == expected
    assert [p["count"] for p in report["pairs"]] == [counts[k] for k in expected]
    names = {(p["true"], p["predicted"]) for p in report["pairs"]}
    # the files put there on purpose are found as confusions of their own
    assert ("cup", "espresso") in names and ("space shuttle", "missile") in names
    for p in report["pairs"]:
        members = sorted((r for r in rows if (r["label"], r["pred"]) == (p["true_index"], p["predicted_index"])),
                         key=lambda r: -float(r["p"][r["pred"]]))
        assert [e["id"] for e in p["examples"]] == [r["id"] for r in members[:3]]  # the most confident first
        for e, r in zip(p["examples"], members, strict=False):
            assert e["p_predicted"] == pytest.approx(float(r["p"][r["pred"]]), abs=1e-6)
            assert e["p_true"] == pytest.approx(float(r["p"][r["label"]]), abs=1e-6)
            assert e["path"].endswith(r["id"].split("/")[1])
    matrix = np.loadtxt(audited / "confusion.csv", delimiter=",", skiprows=1, dtype=str, encoding="utf-8")
    assert matrix.shape == (1000, 1001)
    cup, espresso = embedded.categories.index("cup"), embedded.categories.index("espresso")
    assert int(matrix[cup, 1 + espresso]) == counts[(cup, espresso)]


def test_pairs_page_lists_every_pair_from_the_parquet(embedded: cc.ModelBundle, folders: Path, audited: Path) -> None:
    """pairs.html, rendered from audit.parquet and audit.json alone: every confused pair counted independently (the
    audit shows 4 of them), the shown ones first and linked to audit.html, each image linked to its file; an
    unlabelled audit's page counts (top-2, top-1) pairs past the ambiguity ratio, from the same rows."""
    from classcontrast.confusion.pairs_page import confused_pairs, pairs_page

    rows = _independent(embedded, folders)
    counts = Counter((r["label"], r["pred"]) for r in rows if r["label"] != r["pred"])
    page = (audited / "pairs.html").read_text()
    report = json.loads((audited / "audit.json").read_text())
    assert page.count("<details") == len(counts) and page.count("explained in audit.html") == len(report["pairs"])
    for k, p in enumerate(report["pairs"], 1):  # the shown pairs first, in the audit's order
        assert f'id="pair-{k}"><summary>{k}. {p["true"]} taken for {p["predicted"]}: {p["count"]} image' in page
    for (b, a), n in counts.items():
        assert f"{embedded.categories[b]} taken for {embedded.categories[a]}: {n} image" in page
    href = next(r["id"] for r in rows if r["label"] != r["pred"]).split("/")[1]
    assert any(h.endswith(quote(href)) and (audited / unquote(h)).resolve().is_file()
               for h in re.findall(r'<a href="([^"]+)">', page) if h != "audit.html")
    import pyarrow.parquet as pq

    table = pq.read_table(audited / "audit.parquet").to_pylist()
    unlabelled = [{**r, "label": None} for r in table]  # the same rows, read as an unlabelled audit's
    got = confused_pairs(unlabelled, {"ambiguity": 0.0, "pairs": []})
    firsts = {r["id"]: r for r in table if r["method"] is None and json.loads(r["unit_fields"])["rank"] == 0}
    seconds = {r["id"]: r["target"] for r in table if r["method"] is None and json.loads(r["unit_fields"])["rank"] == 1}
    assert {k: len(v) for k, v in got.items()} == Counter((seconds[i], r["target"]) for i, r in firsts.items())
    assert "second to" in pairs_page(unlabelled, {"labelled": False, "ambiguity": 0.0, "pairs": [],
                                                  "classes": embedded.categories}, audited)


def _maps(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for f in sorted((out / "maps").glob("batch_*.npz")):
        with np.load(f) as z:
            for i, e in enumerate(z["entries"].tolist()):
                found[e] = {k: z[k][i] for k in z.files if k.startswith("maps_") or k in ("classes", "ids")}
    return found


def test_foil_maps_equal_explain_with_foil(embedded: cc.ModelBundle, folders: Path, audited: Path) -> None:
    """For a mistake (true B, predicted A): "why A rather than B" is explain(Foil(B)) for target A, "why B
    rather than A" is explain(Foil(A)) for target B, and the weighted map of A."""
    report = json.loads((audited / "audit.json").read_text())
    maps = _maps(audited)
    pair = report["pairs"][0]
    a, b = pair["predicted_index"], pair["true_index"]
    entry = maps["p0m0"]
    assert str(entry["ids"]) == pair["examples"][0]["id"] and entry["classes"][:2].tolist() == [a, b]
    x = embedded.transform(cc.load_image(pair["examples"][0]["path"]))[None]
    names = ["original", "mean", "max", "weighted", "probability", *(f"foil_{j}" for j in range(5))]
    for method in ("gradcam", "gradient"):
        stored = entry[f"maps_{method}"]  # (classes, contrasts, h, w)
        why_a = cc.explain(embedded, x, method, cc.Foil(b), a).layer_maps[0, 0]
        why_b = cc.explain(embedded, x, method, cc.Foil(a), b).layer_maps[0, 0]
        weighted_a = cc.explain(embedded, x, method, "weighted", a).layer_maps[0, 0]
        if method == "gradient":  # input-space maps are stored averaged over 4×4 blocks (224 -> 56)
            pool = torch.nn.functional.avg_pool2d
            why_a, why_b, weighted_a = (pool(m[None], 4)[0] for m in (why_a, why_b, weighted_a))
        for got, want in [(stored[0, names.index("foil_1")], why_a), (stored[1, names.index("foil_0")], why_b),
                          (stored[0, names.index("weighted")], weighted_a)]:
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-6 * float(want.abs().max()))
        assert not stored[0, names.index("foil_0")].any()  # A rather than A


def test_audit_parquet_answers_the_confusions_and_holds_the_shown_maps(embedded: cc.ModelBundle, folders: Path,
                                                                        audited: Path) -> None:
    """audit.parquet (the dataset schema): DuckDB counts the confusions from the file alone, equal to an independent
    count; the shown maps are the npz's, under their contrasts' names."""
    import duckdb
    import pyarrow.parquet as pq

    from classcontrast.scale.table import schema

    table = pq.read_table(audited / "audit.parquet")
    assert table.schema.equals(schema())
    rows = _independent(embedded, folders)
    want = Counter((r["label"], r["pred"]) for r in rows if r["label"] != r["pred"])
    got = duckdb.sql(f"""SELECT label, predicted, count(*) FROM '{audited}/*.parquet'
                         WHERE method IS NULL AND unit_fields = '{{"rank": 0}}' AND label <> predicted
                         GROUP BY label, predicted""").fetchall()
    assert {(a, b): n for a, b, n in got} == dict(want)
    report = json.loads((audited / "audit.json").read_text())
    pair = report["pairs"][0]
    a, b = pair["predicted_index"], pair["true_index"]
    stored = _maps(audited)["p0m0"]["maps_gradcam"]  # (classes, contrasts, h, w): foil_1 is "a rather than b"
    shown = [r for r in table.to_pylist() if r["id"] == pair["examples"][0]["id"] and r["method"] == "gradcam"
             and r["target"] == a and r["contrast"] == f"foil:{embedded.categories[b]}"]
    assert len(shown) == 1 and shown[0]["map_level"] == "page" and shown[0]["label"] == b
    np.testing.assert_array_equal(np.asarray(shown[0]["map"], np.float32).reshape(shown[0]["map_shape"]),
                                  stored[0, 6])


def test_page_holds_the_same_maps_quantised(audited: Path) -> None:
    html = (audited / "audit.html").read_text()
    start = html.index('type="application/json"')
    data = json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])
    report = json.loads((audited / "audit.json").read_text())
    assert data["kind"] == "audit" and len(data["audit"]["pairs"]) == len(report["pairs"]) == 3  # 3 confusions
    maps = _maps(audited)
    import base64
    from io import BytesIO

    from PIL import Image

    e = next(e for e in data["entries"] if e["id"] == "p0m0")
    m = e["methods"]["gradcam"]
    codes = np.asarray(Image.open(BytesIO(base64.b64decode(m["atlas"].split(",", 1)[1]))))
    tiles = codes.reshape(len(e["targets"]), m["th"], len(m["contrasts"]), m["tw"]).transpose(0, 2, 1, 3)
    values = dequantise(tiles, np.array(m["scales"]))
    stored = maps["p0m0"]["maps_gradcam"]
    step = np.abs(stored).reshape(*stored.shape[:2], -1).max(-1)[..., None, None] / 254 + 1e-12
    assert np.all(np.abs(values - stored) <= step * 1.0001)
    assert m["contrasts"][:5] == ["original", "mean", "max", "weighted", "probability"]
    assert e["default"] == {"target": e["targets"][0], "contrast": f"foil:{e['targets'][1]}"}


def test_a_folder_that_is_not_a_class_is_an_error_before_any_work(embedded: cc.ModelBundle, folders: Path,
                                                                  tmp_path: Path) -> None:
    bad = tmp_path / "data"
    (bad / "not a class at all").mkdir(parents=True)
    cc.sample_image("coffee").save(bad / "not a class at all" / "x.png")
    with pytest.raises(cc.ClassContrastError, match="not a class at all") as e:
        cc.audit(embedded, str(bad), tmp_path / "out")
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


def test_a_flat_folder_audits_the_most_confusable_predicted_pairs(embedded: cc.ModelBundle, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for s in bundled_source().samples[:12]:  # chelsea and coffee views
        s.load().save(flat / f"{s.id.replace('/', '_')}.png")
    tops, ratios = [], []
    for f in sorted(flat.iterdir()):
        with torch.no_grad():
            p = torch.softmax(embedded.model(embedded.transform(cc.load_image(f))[None])[0], 0)
        top = p.topk(2)
        tops.append(tuple(top.indices.tolist()))
        ratios.append(float(top.values[1] / top.values[0]))
    for ambiguity in (0.0, 0.25, 0.6):
        result = cc.audit(embedded, str(flat), None, pairs=3, examples=2, ambiguity=ambiguity)
        assert not result.labelled and result.accuracy is None
        # (top-2, top-1) of every image whose top-2 reaches the ratio, counted independently
        counts = Counter((b, a) for (a, b), r in zip(tops, ratios, strict=True) if r >= ambiguity)
        got = {(p.second, p.first): p.count for p in result.pairs}
        assert got == {k: counts[k] for k in got}
        assert (result.pairs[0].count if result.pairs else 0) == max(counts.values(), default=0)
        assert all(len(p.mistakes) <= 2 for p in result.pairs) and not result.paths
    assert min(ratios) < 0.25 <= max(ratios)  # the threshold does drop confident images here


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "classcontrast", *args]


AUDIT_ARGS = ["--pairs", "3", "--examples", "2", "--batch-size", "2", "--method", "gradcam", "xgradcam"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _outputs(out: Path) -> tuple[dict, dict]:
    return json.loads((out / "audit.json").read_text()), _maps(out)


def _same_maps(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        all(np.array_equal(a[e][k], b[e][k]) for k in a[e]) for e in a)


def _assert_same_outputs(out: Path, reference: Path) -> dict:
    """audit.json and every map of ``out`` equal those of ``reference``; returns the audit.json."""
    a, b = _outputs(out), _outputs(reference)
    assert a[0] == b[0] and _same_maps(a[1], b[1])
    return a[0]


def _audit(folders: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``classcontrast audit`` in a subprocess, as a user runs it; it must succeed."""
    proc = subprocess.run(_cli("audit", str(folders), "--out", str(out), *AUDIT_ARGS), capture_output=True,
                          text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def single_run(folders: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single")
    proc = _audit(folders, out)
    assert "wrote" in proc.stdout and (out / "audit.html").exists()
    return out


def test_a_killed_audit_resumes_with_identical_results(folders: Path, single_run: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(_cli("audit", str(folders), "--out", str(tmp_path), *AUDIT_ARGS),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "maps").glob("batch_*.npz")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # predictions done, maps under way
    proc.wait()
    assert not (tmp_path / "audit.html").exists()
    _audit(folders, tmp_path)
    result = _assert_same_outputs(tmp_path, single_run)
    ids = [json.loads(x)["id"] for x in (tmp_path / "audit_samples.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == result["n"]


def test_a_line_cut_by_a_crash_is_recomputed(folders: Path, single_run: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(single_run, tmp_path, dirs_exist_ok=True)
    log = tmp_path / "audit_samples.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:30])
    for f in list((tmp_path / "maps").glob("*.npz"))[-2:]:
        f.unlink()
    _audit(folders, tmp_path)
    _assert_same_outputs(tmp_path, single_run)


def test_torchrun_shards_the_audit_with_identical_results(folders: Path, single_run: Path, tmp_path: Path) -> None:
    cmd = [str(BIN / "torchrun"), "--nproc_per_node=2", "--master_port=29531", "-m", "classcontrast", "audit",
           str(folders), "--out", str(tmp_path), *AUDIT_ARGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "audit_samples.rank1.jsonl").exists()  # rank 1 did its share
    _assert_same_outputs(tmp_path, single_run)


def test_the_audit_on_ray_equals_the_local_audit(local_ray: object, folders: Path, single_run: Path,
                                                tmp_path: Path) -> None:
    """``audit --engine ray``: both phases' batches run in two Ray workers (one CPU each, as the single run's one
    thread), this process writing every file: the same audit.json (predictions, counts, pairs) and the same maps,
    bit for bit; the per-image log holds every image once."""
    assert run(["audit", str(folders), "--out", str(tmp_path), *AUDIT_ARGS, "--engine", "ray",
                "--concurrency", "2"]) == 0
    result = _assert_same_outputs(tmp_path, single_run)
    ids = [json.loads(x)["id"] for x in (tmp_path / "audit_samples.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(json.loads(x)["id"] for x in
                                 (single_run / "audit_samples.jsonl").read_text().splitlines())
    assert len(ids) == len(set(ids)) == result["n"]


def test_audit_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert run(["audit", "--method", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert run(["audit", "--pairs", "0", "--out", str(tmp_path / "o")]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_audit_page_in_a_real_browser(audited: Path) -> None:
    """Overview -> pair -> one image and back, with real clicks and keys; no request leaves the file."""
    from tools.browser import Browser

    page = (audited / "audit.html").resolve()
    report = json.loads((audited / "audit.json").read_text())
    with Browser() as b:
        b.open(page.as_uri())
        view = "document.querySelector('.cc-viewer').dataset.view"
        assert b.eval(view) == "overview"
        assert b.eval("document.querySelectorAll('tr.cc-row').length") == len(report["pairs"])
        assert b.eval("document.querySelectorAll('.cc-matrix td.cc-hit').length") == len(report["pairs"])
        b.click(".cc-matrix td.cc-hit")  # the confusion overview is clickable
        b.settled()
        assert b.eval(view) == "pair"
        b.key("Escape")
        b.settled()
        b.click('tr.cc-row[data-pair="0"]')
        b.settled()
        assert b.eval(view) == "pair"
        first = report["pairs"][0]
        cards = b.eval("[...document.querySelectorAll('.cc-card')].map(c => c.dataset.entry)")
        assert cards[: len(first["examples"])] == [f"p0m{j}" for j in range(len(first["examples"]))]
        assert len(cards) == len(first["examples"]) + len(first["correct"])
        b.click('.cc-card[data-entry="p0m0"]')
        fp_foil = b.settled()
        assert b.eval(view) == "entry"
        question = "document.querySelector('.cc-question').textContent"
        assert b.eval(question) == f"Why {first['predicted']} rather than {first['true']}?"
        b.click('button[data-control="contrast"][data-value="weighted"]')
        fp_weighted = b.settled()
        b.click(f'button[data-control="target"][data-value="{first["true_index"]}"]')
        b.settled()
        b.click(f'button[data-control="contrast"][data-value="foil:{first["predicted_index"]}"]')
        fp_other_way = b.settled()
        assert b.eval(question) == f"Why {first['true']} rather than {first['predicted']}?"
        assert len({fp_foil, fp_weighted, fp_other_way}) == 3
        b.key("m")  # the second method
        assert b.settled() != fp_other_way
        assert b.eval("document.querySelector('button[data-control=method][aria-pressed=true]').dataset.value") == \
            "gradient"
        b.key("Escape")
        b.settled()
        assert b.eval(view) == "pair"
        shot = b.screenshot()
        urls = b.requests()
    assert urls and all(u == page.as_uri() or u.startswith("data:") for u in urls), urls
    _not_blank(shot)


def _not_blank(png: bytes) -> None:
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)
    assert img.std() > 20
    red = ((img[..., 0] > 180) & (img[..., 1] < 150) & (img[..., 2] < 150)).sum()
    assert red > 200  # an overlay is drawn, not just text


def test_audit_cli_method_options_reach_the_method_and_key_the_saved_maps(
        embedded: cc.ModelBundle, folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["audit", str(folders), "--out", str(tmp_path / "cli"), "--pairs", "1", "--examples", "1",
            "--batch-size", "2", "--method", "integrated_gradients"]
    references = {}
    for steps in (2, 3):
        references[steps] = tmp_path / f"library{steps}"
        cc.audit(embedded, str(folders), references[steps], methods=["integrated_gradients"], pairs=1, examples=1,
                 batch_size=2, steps=steps)
    assert not _same_maps(_maps(references[2]), _maps(references[3]))  # the option changes the maps
    assert run([*args, "--steps", "2"]) == 0
    _assert_same_outputs(tmp_path / "cli", references[2])
    assert run([*args, "--steps", "3"]) == 0  # the same folder: maps made with 2 steps are not reused
    _assert_same_outputs(tmp_path / "cli", references[3])
    capsys.readouterr()
    assert run([*args[:-1], "gradcam", "--steps", "4"]) == 2
    assert "--steps is not an option of gradcam" in capsys.readouterr().err
    with pytest.raises(cc.ClassContrastError, match="keep_channels"):
        cc.audit(embedded, str(folders), None, methods=["gradient"], keep_channels=True)


def test_unlabelled_audit_speaks_of_top_1_and_top_2(embedded: cc.ModelBundle, tmp_path: Path) -> None:
    """One vocabulary without labels: JSON keys first/second, "top-1 vs top-2" on the console and the
    page (no "true", no "predicted"), the threshold stated, rows that look clickable, the hint above."""
    from tools.browser import Browser

    flat = tmp_path / "flat"
    flat.mkdir()
    for s in bundled_source().samples[:12]:
        s.load().save(flat / f"{s.id.replace('/', '_')}.png")
    out = tmp_path / "out"
    proc = subprocess.run(_cli("audit", str(flat), "--out", str(out), "--pairs", "2", "--examples", "1",
                               "--ambiguity", "0.2"), capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "no labels" in proc.stdout and "top-1 vs top-2" in proc.stdout and "taken for" not in proc.stdout
    report = json.loads((out / "audit.json").read_text())
    assert report["pairs"] and not report["labelled"] and "top-1 vs top-2" in report["pairs_are"]
    assert all({"first", "second", "mean_p_first"} <= set(p) and "true" not in p and "predicted" not in p
               for p in report["pairs"])
    assert all(e["p_second"] / e["p_first"] >= 0.2 for p in report["pairs"] for e in p["examples"])
    assert (out / "confusion.csv").read_text().startswith("top-2 \\ top-1,")
    with Browser() as b:
        b.open((out / "audit.html").resolve().as_uri())
        b.settled()
        text = b.eval("document.querySelector('.cc-viewer').innerText")
        assert "top-1 vs top-2" in text and "0.2" in text and "true" not in text.lower().split()
        assert "predicted" not in text
        hint = b.eval("document.querySelector('.cc-hint').getBoundingClientRect().top")
        table = b.eval("document.querySelector('table.cc-pairs').getBoundingClientRect().top")
        assert hint < table  # the hint is read before the table
        assert b.eval("getComputedStyle(document.querySelector('tr.cc-row')).cursor") == "pointer"
        assert b.eval("document.querySelectorAll('tr.cc-row button.cc-open').length") == len(report["pairs"])
        b.click("tr.cc-row button.cc-open")
        b.settled()
        assert b.eval("document.querySelector('.cc-viewer').dataset.view") == "pair"
        heading = b.eval("document.querySelector('.cc-viewer h2').textContent")
        first = report["pairs"][0]
        assert heading.startswith(f"{first['first']} vs {first['second']} (top-1 vs top-2)")


def test_long_file_names_stay_inside_their_cards(audited: Path, tmp_path: Path) -> None:
    """A pair's image cards keep a long file name (no spaces) inside their width (on today's main it ran into the
    next card)."""
    from tools.browser import Browser

    html = (audited / "audit.html").read_text()
    start = html.index('type="application/json"')
    begin, end = html.index(">", start) + 1, html.index("</script>", start)
    data = json.loads(html[begin:end])
    for e in data["entries"]:
        e["title"] = "a_very_long_file_name_from_a_camera_export_2026_12_06_" + e["title"]
    page = tmp_path / "long.html"
    page.write_text(html[:begin] + json.dumps(data).replace("</", "<\\/") + html[end:])
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        b.click('tr.cc-row[data-pair="0"]')
        b.settled()
        widths = b.eval("[...document.querySelectorAll('.cc-card')].map(c => [c.scrollWidth, c.clientWidth])")
    assert widths and all(scroll <= client for scroll, client in widths), widths


def test_the_class_sensitivity_of_the_shown_maps() -> None:
    """Hand-made shown maps: a class-blind method (the same map for every class) measures 0, maps that reverse each
    other 2, per method and named contrast, the most probable offered class taken as the first."""
    from classcontrast.confusion.run import Audit, Slot
    from classcontrast.explorer.page import NAMED

    ramp = np.arange(12.0).reshape(3, 4)
    blind = np.stack([np.stack([ramp] * len(NAMED))] * 2)  # (classes, contrasts, h, w)
    opposed = blind.copy()
    opposed[0] = -ramp  # the less probable class (p 0.2): the reversed map
    audit = Audit("m", "d", 1, None, False, ["a", "b"], np.zeros((2, 2)), [], [], ["blind", "opposed"],
                  slots=[Slot("e0", {}, [0, 1], (0, "original"))],
                  maps={"e0": {"maps": {"blind": blind, "opposed": opposed}, "p": [0.2, 0.8]}})
    got = audit.class_sensitivity()
    assert got["blind"] == {c: 0.0 for c in NAMED} and got["opposed"] == {c: 2.0 for c in NAMED}
