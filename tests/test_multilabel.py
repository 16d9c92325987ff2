"""Multi-label (sigmoid) models: `Threshold` targets by brute force, planted evidence on real digit scenes
over seeds, and the multi-label audit (label sets from a CSV) against an independent count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import classcontrast as cc
from tests.scenes import Scenes, box_share, deletion_area, make_scenes, train_multilabel
from tests.test_cli import run

SEEDS = (0, 1)  # (seed 2 passed as well; two keep the suite in its time)


@pytest.fixture(scope="module")
def scene_models() -> list[cc.ModelBundle]:
    return [train_multilabel(seed) for seed in SEEDS]


def _small(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 12)).double().eval()


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_threshold_takes_every_label_above_p(head: str) -> None:
    model = _small()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64) * 3
    with torch.no_grad():
        y = model(x)
    p = torch.sigmoid(y) if head == "sigmoid" else torch.softmax(y, 1)
    level = float(p.flatten().sort().values[-12])  # about a dozen labels above it, unevenly per image
    ex = cc.explain(model, x, "gradient", "original", cc.Threshold(level), head=head)
    want = [sorted(range(12), key=lambda c: -float(p[i, c]))[: int((p[i] >= level).sum())] for i in range(5)]
    k = max(len(w) for w in want)
    assert ex.targets.shape == (5, k) and k > 1 and len({len(w) for w in want}) > 1  # the test's premise
    for i in range(5):  # the selected targets are exactly the labels above p, most probable first
        got = ex.targets[i][ex.selected[i]].tolist()
        assert got == want[i]
        fill = ex.targets[i][~ex.selected[i]].tolist()  # fillers: the next most probable labels
        assert fill == sorted(set(range(12)) - set(want[i]), key=lambda c: -float(p[i, c]))[: k - len(want[i])]
    brute = cc.explain(model, x, "gradient", "original", ex.targets, head=head)
    torch.testing.assert_close(ex.maps, brute.maps)
    wider = cc.explain(model, x, "gradient", "original", cc.Threshold(level, k=k + 2), head=head)
    assert wider.targets.shape[1] == k + 2
    with pytest.raises(cc.ClassContrastError, match=r"no class has probability >= 0\.9999"):
        cc.explain(model, torch.zeros(1, 3, 8, 8, dtype=torch.float64), "gradient", "original", cc.Threshold(0.9999),
                   head=head)
    with pytest.raises(cc.ClassContrastError, match="0 < p < 1"):
        cc.Threshold(1.5)


def test_figures_leave_the_fillers_out() -> None:
    model = _small(1)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64) * 3
    with torch.no_grad():
        level = float(torch.sigmoid(model(x)).flatten().sort().values[-5])
    ex = cc.explain(model, x, "gradient", ["original", "probability"], cc.Threshold(level), head="sigmoid")
    shown = int(ex["original"].selected.sum())
    assert shown < ex.targets.numel()  # some fillers
    fig = cc.plot_explanations([torch.rand(3, 8, 8)] * 3, dict(ex))
    assert len(fig.axes) == shown * 3 + 1  # per shown target: the image and two maps; one colour bar
    titles = [a.get_title() for a in fig.axes]
    assert sum("(independent)" in t for t in titles) == shown
    # the explorer offers each image its labels above the threshold only, with their own maps
    from classcontrast.explorer.compute import explorer_data
    from classcontrast.models import Normalize

    bundle = cc.ModelBundle(model, lambda image: image, Normalize((0.0,) * 3, (1.0,) * 3),
                            [f"label {i}" for i in range(12)], "multi-label", head="sigmoid")
    data = explorer_data(bundle, x, ["gradient"], cc.Threshold(level))
    from tests.test_detection import _tile

    for i, e in enumerate(data["entries"]):
        want = ex["original"].targets[i][ex["original"].selected[i]].tolist()
        foils = e["methods"]["gradient"]["contrasts"][-len(want) :]
        assert e["targets"] == want and foils == [f"foil:{c}" for c in want]
        j = len(want) - 1
        ref = cc.explain(bundle, x[i : i + 1], "gradient", "original", want[j]).layer_maps[0, 0]
        np.testing.assert_allclose(_tile(e, "gradient", j, "original"), ref.float().numpy(),
                                   atol=float(ref.abs().max()) / 100)


def _deletion_auc(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, t: torch.Tensor) -> float:
    """Deletion of sigma(y_t) in each map's order."""
    return deletion_area(lambda xx: torch.sigmoid(model(xx)).gather(1, t[:, None])[:, 0], x, maps)


def test_planted_evidence_on_digit_scenes_over_seeds(scene_models: list[cc.ModelBundle]) -> None:
    """On held-out scenes (digits the model never saw), for every seed: the map of label t puts most of its
    positive mass on the pasted digit t (its box is 3.5% of the canvas); deleting pixels in its order
    removes sigma(y_t) far faster than a random order or the map of another label present; and "t rather
    than s" is positive on digit t and negative on digit s."""
    for seed, bundle in zip(SEEDS, scene_models, strict=True):
        scenes = make_scenes(80, seed=1000 + seed, split="test")
        x = bundle.normalize(scenes.images)
        t = torch.tensor([sorted(b)[0] for b in scenes.boxes])
        s = torch.tensor([sorted(b)[1] for b in scenes.boxes])
        ex = cc.explain(bundle, x, "gradient_x_input", ["original", cc.Foil(s)], t[:, None])
        own, why_not_s = ex["original"].maps[:, 0], ex["foil"].maps[:, 0]
        other = cc.explain(bundle, x, "gradient_x_input", "original", s[:, None]).maps[:, 0]
        assert box_share(own, scenes, t.tolist()) > 0.4, seed
        random = torch.rand(own.shape, generator=torch.Generator().manual_seed(seed))
        auc_own = _deletion_auc(bundle.model, x, own, t)
        auc_random, auc_other = _deletion_auc(bundle.model, x, random, t), _deletion_auc(bundle.model, x, other, t)
        assert auc_own < auc_random - 0.3 and auc_own < auc_other - 0.3, (seed, auc_own, auc_random, auc_other)
        in_t = torch.stack([why_not_s[i][scenes.box_mask(i, int(t[i]))].mean() for i in range(len(x))])
        in_s = torch.stack([why_not_s[i][scenes.box_mask(i, int(s[i]))].mean() for i in range(len(x))])
        # (seed 0 here: 0.93 / 0.78 trained with two threads, 0.99 / 0.85 with one: the trained model's last bits
        # follow the thread count and the CPU; chance is 0.5)
        assert float((in_t > 0).float().mean()) >= 0.85 and float((in_s < 0).float().mean()) >= 0.75, seed


def _write_scenes(scenes: Scenes, folder: Path) -> Path:
    (folder / "img").mkdir(parents=True)
    lines = ["path,labels"]
    for i in range(len(scenes.images)):
        Image.fromarray((scenes.images[i, 0].numpy() * 255).round().astype(np.uint8), "L").save(
            folder / "img" / f"s{i:03d}.png")
        lines.append(f"img/s{i:03d}.png," + ";".join(str(c) for c in sorted(scenes.boxes[i])))
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder / "labels.csv"


def test_multilabel_audit_matches_an_independent_count(scene_models: list[cc.ModelBundle], tmp_path: Path) -> None:
    bundle = scene_models[0]
    scenes = make_scenes(120, seed=2024, split="test")
    labels = _write_scenes(scenes, tmp_path / "data")
    out = tmp_path / "out"
    result = cc.audit(bundle, str(labels), out, ["gradient_x_input"], pairs=3, examples=2, seed=None)
    # independent: each file through the bundle's preprocessing and the raw model, sigma >= 0.5
    present, predicted, sig = [], [], []
    for i in range(len(scenes.images)):
        xi = bundle.transform(cc.load_image(tmp_path / "data" / "img" / f"s{i:03d}.png"))[None]
        with torch.no_grad():
            p = torch.sigmoid(bundle.model(xi).double())[0]
        present.append(set(scenes.boxes[i]))
        predicted.append({c for c in range(10) if p[c] >= 0.5})
        sig.append(p)
    fp = {c: sum(c in q and c not in r for r, q in zip(present, predicted, strict=True)) for c in range(10)}
    fn = {c: sum(c in r and c not in q for r, q in zip(present, predicted, strict=True)) for c in range(10)}
    assert result.multilabel and sum(fp.values()) and sum(fn.values())  # the model makes both kinds of mistake
    stats = {s["index"]: s for s in result.label_stats}
    for c in range(10):
        got = stats.get(c, {"false_positives": 0, "false_negatives": 0})
        assert (got["false_positives"], got["false_negatives"]) == (fp[c], fn[c])
    assert result.accuracy == pytest.approx(np.mean([r == q for r, q in zip(present, predicted, strict=True)]))
    pairs: dict[tuple[int, int], list[float]] = {}  # (B missed, A predicted instead) -> sigma(A) per image
    for r, q, p in zip(present, predicted, sig, strict=True):
        for b in r - q:
            for a in q - r:
                pairs.setdefault((b, a), []).append(float(p[a]))
    ranked = sorted(pairs, key=lambda k: (-len(pairs[k]), -np.mean(pairs[k]), k))
    assert len(pairs) > 2 and [(p.true, p.predicted, p.count) for p in result.pairs] == [
        (b, a, len(pairs[b, a])) for b, a in ranked[:3]]
    report = json.loads((out / "audit.json").read_text())
    assert report["multilabel"] and report["threshold"] == 0.5 and "predicted but absent" in report["pairs_are"]
    first = report["pairs"][0]
    b, a = first["present_index"], first["predicted_instead_index"]
    example = first["examples"][0]
    assert b in example["labels"] and b not in example["predicted_labels"] and a in example["predicted_labels"]
    assert (out / "confusion.csv").read_text().startswith("present and missed \\ predicted but absent,")
    assert (out / "labels.csv").read_text().splitlines()[0].startswith("class,index,support,true_positives")
    # the shown map "why A rather than B" is explain(Foil(B)) for target A, as sigmoid logit differences
    x = bundle.transform(cc.load_image(example["path"]))[None]
    stored = result.maps["p0m0"]["maps"]["gradient_x_input"]  # (classes, contrasts, h, w)
    want = cc.explain(bundle, x, "gradient_x_input", cc.Foil(b), a).layer_maps[0, 0]
    names = ["original", "mean", "max", "weighted", "probability"]
    np.testing.assert_allclose(stored[0, len(names) + 1], want.numpy(), rtol=1e-4,
                               atol=1e-6 * float(want.abs().max()))
    assert result.maps["p0m0"]["p"][:2] == pytest.approx([float(sig[int(example["id"][5:8])][c]) for c in (a, b)])

    from tools.browser import Browser

    with Browser() as br:
        br.open((out / "audit.html").resolve().as_uri())
        br.settled()
        text = br.eval("document.querySelector('.cc-viewer').innerText")
        assert "multi-label" in text and "Per label" in text and "predicted instead" in text and "σ(y) ≥ 0.5" in text
        br.click("tr.cc-row button.cc-open")
        br.settled()
        heading = br.eval("document.querySelector('.cc-viewer h2').textContent")
        assert heading.startswith(f"{b} present but missed, {a} predicted instead")
        assert "σ(" in br.eval("document.querySelector('.cc-card').innerText")


def test_multilabel_data_errors(scene_models: list[cc.ModelBundle], tmp_path: Path) -> None:
    labels = _write_scenes(make_scenes(3, seed=7, split="test"), tmp_path)
    softmax = cc.ModelBundle(scene_models[0].model, scene_models[0].preprocess, scene_models[0].normalize,
                             scene_models[0].categories)
    with pytest.raises(cc.ClassContrastError, match="needs a multi-label model: a sigmoid head"):
        cc.audit(softmax, str(labels), None)
    for text, message in [("img/s000.png,3;eleven\n", "unknown class 'eleven' .*bad.csv, line 1"),
                          ("img/nope.png,3\n", "line 1: no image 'img/nope.png'"),
                          ("path,labels\nimg/s000.png,3,4\n", "line 2: expected 'path,label;label'")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(cc.ClassContrastError, match=message):
            cc.audit(scene_models[0], str(bad), None)


def test_the_command_line_explains_every_class_above_a_threshold(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--threshold on the embedded classifier: each photo's classes with p >= 0.1 (different counts), one
    figure row each, the array of which targets were selected; a threshold nothing reaches is one line."""
    from classcontrast.data import sample_image

    bundle = cc.load_model()
    photos = []
    for name in ("chelsea", "coffee"):
        sample_image(name).save(tmp_path / f"{name}.png")
        photos.append(str(tmp_path / f"{name}.png"))
    code = run(["explain", *photos, "--threshold", "0.1", "--out", str(tmp_path / "why.png"),
                "--save-maps", str(tmp_path / "maps.npz"), "--contrast", "weighted"])
    assert code == 0, capsys.readouterr().err
    z = np.load(tmp_path / "maps.npz")
    x = torch.stack([bundle.transform(cc.load_image(p)) for p in photos])
    with torch.no_grad():
        p = torch.softmax(bundle.model(x).double(), 1)
    for i in range(2):
        above = sorted((c for c in range(p.shape[1]) if p[i, c] >= 0.1), key=lambda c: -float(p[i, c]))
        assert z["targets"][i][z["selected"][i]].tolist() == above
    assert len({int(z["selected"][i].sum()) for i in range(2)}) == 2  # the photos have different counts
    capsys.readouterr()
    code = run(["explain", photos[0], "--threshold", "0.99", "--out", str(tmp_path / "no.png")])
    err = capsys.readouterr().err
    assert code == 2 and "--threshold 0.99: no class reaches it" in err and len(err.strip().splitlines()) == 1
