"""Contrast-aware faithfulness: hand-computed areas, planted evidence, ROAD's linear system, real digits."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

import classcontrast as cc
from classcontrast.data.sources import Sample, SampleSource
from classcontrast.errors import ClassContrastError
from classcontrast.evaluation.faithfulness import auc, markdown_tables, ranking, run_faithfulness
from classcontrast.evaluation.road import road_impute
from classcontrast.methods import METHODS, Recording, register_method
from classcontrast.methods.gradient import GradientXInput
from classcontrast.models import ModelBundle, Normalize
from tests.test_cli import run


class Linear(nn.Module):
    """logits[c] = Σ_ij W[c, i, j] x[i, j] (one channel): the evidence for class c is W_c ⊙ x, exactly."""

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.weights = nn.Parameter(weights)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bchw,khw->bk", x, self.weights)


def _bundle(model: nn.Module, size: int, classes: int) -> ModelBundle:
    def preprocess(img: Image.Image) -> Tensor:
        return torch.from_numpy(np.asarray(img, dtype=np.float64) / 255.0)[None]

    return ModelBundle(model.double().eval(), preprocess, Normalize((0.0,), (1.0,)),
                       [f"class {i}" for i in range(classes)], "linear")


def _source(images: list[np.ndarray], labels: list[int]) -> SampleSource:
    return SampleSource([Sample(f"img{i}", lambda a=a: Image.fromarray(a), y)
                         for i, (a, y) in enumerate(zip(images, labels, strict=True))], "given", "test images")


def test_areas_equal_hand_computed_values() -> None:
    """2×2 image of ones, logit_0 = 4·x00 + 3·x01 + 2·x10 + 1·x11, logit_1 = 0, zeros baseline, fractions
    ¼ … 1: deletion removes 4, 3, 2, 1 -> y = 10, 6, 3, 1, 0; insertion puts them back -> 0, 4, 7, 9, 10."""
    w = torch.tensor([[[4.0, 3.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    bundle = _bundle(Linear(w), 2, 2)
    src = _source([np.full((2, 2), 255, np.uint8)], [0])
    res = run_faithfulness(bundle, src, ["gradient_x_input"], ["original"], ["zeros"], ["logit", "probability"],
                           [0.25, 0.5, 0.75, 1.0])
    rec = {(r["method"], r["score"]): r for r in res["records"]}
    logit = rec[("gradient_x_input", "logit")]
    assert logit["deletion_curve"] == pytest.approx([10, 6, 3, 1, 0])
    assert logit["insertion_curve"] == pytest.approx([0, 4, 7, 9, 10])
    assert logit["auc_deletion"] == pytest.approx(0.25 * (8 + 4.5 + 2 + 0.5))  # 3.75
    assert logit["auc_insertion"] == pytest.approx(0.25 * (2 + 5.5 + 8 + 9.5))  # 6.25
    assert logit["morf_minus_lerf"] == pytest.approx(3.75 - 6.25)
    sig = [1 / (1 + math.exp(-y)) for y in (10, 6, 3, 1, 0)]  # p_0 of two logits (y, 0)
    prob = rec[("gradient_x_input", "probability")]
    assert prob["deletion_curve"] == pytest.approx(sig)
    assert prob["auc_deletion"] == pytest.approx(sum(0.25 * (a + b) / 2 for a, b in itertools.pairwise(sig)))
    assert logit["n"] == 1


def test_auc_and_ranking() -> None:
    assert auc([1, 1, 1], [0, 0.5, 1]) == pytest.approx(1.0)
    assert auc([0, 1], [0, 1]) == pytest.approx(0.5)
    ranks = ranking(torch.tensor([[[0.5, 2.0], [0.5, -1.0]]]))
    assert ranks.tolist() == [[[1, 0], [2, 3]]]  # ties: the lower pixel index first


class ReversedEvidence(GradientXInput):
    """The evidence map negated: the least relevant pixels ranked first."""

    name = "reversed_evidence_test"

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        return -super().compute(rec, grads)


@pytest.fixture
def reversed_method() -> Iterator[str]:
    """A method registered for one test (and removed again: the registry is global)."""
    register_method(ReversedEvidence)
    yield ReversedEvidence.name
    del METHODS[ReversedEvidence.name]


def test_planted_evidence_true_map_random_reversed(reversed_method: str) -> None:
    """Only the top-left quadrant carries the classes: deleting by the true evidence map drops p_t fastest,
    a random map sits in between, the reversed map is slowest; insertion the other way round."""
    g = torch.Generator().manual_seed(0)
    w = torch.zeros(4, 8, 8, dtype=torch.float64)
    w[:, :4, :4] = torch.randn(4, 4, 4, generator=g, dtype=torch.float64) * 2
    bundle = _bundle(Linear(w), 8, 4)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(12)]
    x = torch.stack([bundle.preprocess(Image.fromarray(a)) for a in images])
    labels = bundle.model(x).argmax(1).tolist()
    # with the zeros baseline, gradient × input is exactly each pixel's evidence (removing pixel i changes
    # the logit by -W_i x_i)
    res = run_faithfulness(bundle, _source(images, labels), ["gradient_x_input", "reversed_evidence_test"],
                           ["original"], ["zeros"], ["probability"])
    for base in ("zeros",):
        got = {r["method"]: r for r in res["records"] if r["baseline"] == base}
        true, rnd, rev = (got[m] for m in ("gradient_x_input", "random", "reversed_evidence_test"))
        assert true["auc_deletion"] < rnd["auc_deletion"] < rev["auc_deletion"], base
        assert true["auc_insertion"] > rnd["auc_insertion"] > rev["auc_insertion"], base
        assert true["morf_minus_lerf"] < rnd["morf_minus_lerf"] < rev["morf_minus_lerf"], base
    conf = {r["method"]: r for r in res["confidence"]}
    assert conf["gradient_x_input"]["average_drop"] < conf["random"]["average_drop"]


def _dense_road(x: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's system written out and solved densely: for each removed pixel, (Σ w over in-image neighbours)
    v_i − Σ w v_n (removed neighbours) = Σ w x_n (kept neighbours); w = 1/6 direct, 1/12 diagonal."""
    h, w = removed.shape
    idx = {p: k for k, p in enumerate(zip(*np.nonzero(removed), strict=True))}
    a = np.zeros((len(idx), len(idx)))
    b = np.zeros((len(idx), x.shape[0]))
    for (i, j), k in idx.items():
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                    continue
                weight = 1 / 6 if di == 0 or dj == 0 else 1 / 12
                a[k, k] += weight
                n = (i + di, j + dj)
                if n in idx:
                    a[k, idx[n]] -= weight
                else:
                    b[k] += weight * x[:, n[0], n[1]]
    out = x.copy()
    sol = np.linalg.solve(a, b)
    for (i, j), k in idx.items():
        out[:, i, j] = sol[k]
    return out


def test_road_imputation_equals_a_direct_solve() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 9, 12, generator=g, dtype=torch.float64)
    removed = torch.rand(3, 9, 12, generator=g) < torch.tensor([0.3, 0.7, 0.95]).view(3, 1, 1)
    removed[2, 0, 0] = False  # at least one kept pixel
    ours = road_impute(x, removed, noise=0.0, tol=1e-13)
    for i in range(3):
        np.testing.assert_allclose(ours[i].numpy(), _dense_road(x[i].numpy(), removed[i].numpy()), atol=1e-10)
    # and pytorch-grad-cam's scipy implementation (float32)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    ref = NoisyLinearImputer(noise=0.0)(x[1].float(), (~removed[1]).float())
    np.testing.assert_allclose(ours[1].float().numpy(), ref.numpy(), atol=1e-6)
    # noise only on removed pixels, reproducible from the generator
    noisy = road_impute(x, removed, noise=0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[~removed[:, None].expand_as(x)], x[~removed[:, None].expand_as(x)])
    again = road_impute(x, removed, noise=0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    everything = road_impute(x, torch.ones(3, 9, 12, dtype=torch.bool), noise=0.0)
    torch.testing.assert_close(everything, x.mean((-2, -1), keepdim=True).expand_as(x))


def test_road_on_large_holes_converges() -> None:
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    removed = torch.zeros(1, 96, 96, dtype=torch.bool)
    removed[:, 5:90, 3:80] = True
    out = road_impute(x, removed, noise=0.0)
    inner = out[0, :, 6:89, 4:79]  # a harmonic fill: every value within the range of the kept ones
    assert float(inner.min()) >= float(x.min()) - 1e-3 and float(inner.max()) <= float(x.max()) + 1e-3
    resid = out[0, :, 20:70, 20:60]
    lap = (resid[:, 1:-1, 1:-1] - (resid[:, :-2, 1:-1] + resid[:, 2:, 1:-1] + resid[:, 1:-1, :-2]
                                   + resid[:, 1:-1, 2:]) / 4)
    assert float(lap.abs().max()) < 5e-3  # the discrete equation holds (up to the diagonal weights)


@pytest.fixture(scope="module")
def digits() -> tuple[ModelBundle, SampleSource]:
    from tests.digits import train_digits

    bundle, source = train_digits(seed=0)
    return bundle, source.select(limit=60, seed=0)


def test_weighted_deletes_p_t_faster_than_original_on_real_digits(digits: tuple) -> None:
    """Measured on 4 training seeds (README): for gradient × input the weighted map's deletion area of
    p_t is smaller than the original's with every baseline; asserted here on one seed, two baselines."""
    bundle, source = digits
    res = run_faithfulness(bundle, source, ["gradient_x_input"], ["original", "weighted"], ["zeros", "blur"],
                           ["probability", "contrast"], batch_size=64)
    rec = {(r["method"], r["contrast"], r["baseline"], r["score"]): r for r in res["records"]}
    for base in ("zeros", "blur"):
        weighted = rec[("gradient_x_input", "weighted", base, "probability")]["auc_deletion"]
        original = rec[("gradient_x_input", "original", base, "probability")]["auc_deletion"]
        chance = rec[("random", "weighted", base, "probability")]["auc_deletion"]
        assert weighted < original < chance, base
        # scored on its own objective, logit(p_t), the weighted map also beats chance
        own = rec[("gradient_x_input", "weighted", base, "contrast")]
        assert own["auc_deletion"] < rec[("random", "weighted", base, "contrast")]["auc_deletion"]


def test_the_class_sensitivity_column_is_cc_class_sensitivity(digits: tuple) -> None:
    """The confidence table's class sensitivity per method × contrast = the mean of cc.class_sensitivity over the
    same images; the random map has none; the Markdown table shows the column."""
    bundle, source = digits
    small = source.select(limit=6)
    res = run_faithfulness(bundle, small, ["gradient_x_input"], ["original", "weighted"], ["zeros"], ["probability"],
                           [0.5, 1.0], 6)
    x = bundle.normalize(torch.stack([s.prepared(bundle.preprocess) for s in small]))
    got = {(r["method"], r["contrast"]): r["class_sensitivity"] for r in res["confidence"]}
    for c in ("original", "weighted"):
        want = cc.class_sensitivity(bundle, x, "gradient_x_input", c).mean_sensitivity
        assert got[("gradient_x_input", c)] == pytest.approx(want, abs=1e-9)
    assert got[("random", "original")] is None and "class sensitivity" in markdown_tables(res)


def test_resumed_run_gives_the_same_numbers(digits: tuple, tmp_path) -> None:
    bundle, source = digits
    small = source.select(limit=8)
    args = (bundle, small, ["gradcam"], ["weighted"], ["zeros", "road"], ["probability"], [0.5, 1.0], 4, "cpu", 0,
            "features.3")
    whole = run_faithfulness(*args)
    log = tmp_path / "f.jsonl"
    run_faithfulness(*args, log_path=log)
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # a crash: rows lost, one cut
    resumed = run_faithfulness(*args, log_path=log)
    assert json.dumps(resumed, sort_keys=True) == json.dumps(whole, sort_keys=True)


def test_a_log_reused_with_other_fractions_or_scores_is_recomputed_not_mixed(digits: tuple, tmp_path) -> None:
    bundle, source = digits
    small = source.select(limit=4)
    log = tmp_path / "f.jsonl"
    grids = [(["probability"], [0.5, 1.0]), (["probability", "logit"], [0.25, 0.5, 1.0])]
    for scores, fractions in grids + grids[:1]:
        args = (bundle, small, ["gradient_x_input"], ["weighted"], ["zeros"], scores, fractions, 4)
        got = run_faithfulness(*args, log_path=log)
        assert json.dumps(got, sort_keys=True) == json.dumps(run_faithfulness(*args), sort_keys=True)
    assert len(log.read_text().splitlines()) == 2 * 2 * 4  # two grids × (method, random) × images


def test_method_options_reach_the_method_and_key_the_log(digits: tuple, tmp_path) -> None:
    bundle, source = digits
    small = source.select(limit=6)
    args = (bundle, small, ["integrated_gradients"], ["weighted"], ["zeros"], ["probability"], [0.25, 0.5, 1.0], 3)
    whole = {n: run_faithfulness(*args, method_options={"steps": n}) for n in (2, 3)}
    assert json.dumps(whole[2]["records"]) != json.dumps(whole[3]["records"])  # the option changes the maps
    assert whole[3]["info"]["method_options"] == {"integrated_gradients": {"steps": 3}}
    log = tmp_path / "f.jsonl"
    for n in (2, 3, 2):  # one log: each run sees only its own options' rows, and reuses them when resumed
        got = run_faithfulness(*args, log_path=log, method_options={"steps": n})
        assert json.dumps(got, sort_keys=True) == json.dumps(whole[n], sort_keys=True)
    assert len(log.read_text().splitlines()) == 3 * 6  # IG with 2 and 3 steps, one random map; no row twice
    with pytest.raises(ClassContrastError, match="samples is not an option of integrated_gradients"):
        run_faithfulness(*args, method_options={"samples": 4})


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--score", "accuracy"], "unknown score 'accuracy'"), (["--baseline", "noise"], "unknown baseline 'noise'"),
     (["--fractions", "0.5", "1.5"], "fractions must be in (0, 1]"), (["--fractions", "0"], "must be in (0, 1]"),
     (["--limit", "0"], "--limit must be at least 1"),
     (["--method", "gradcam", "--steps", "4"], "--steps is not an option of gradcam")],
)
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["evaluate", "faithfulness", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_writes_tables_and_curves(tmp_path) -> None:
    out = tmp_path / "f"
    assert run(["evaluate", "faithfulness", "--limit", "2", "--method", "gradcam", "--contrast", "original",
                "weighted", "--baseline", "zeros", "--fractions", "0.5", "1", "--out", str(out)]) == 0
    records = json.loads((out / "faithfulness.json").read_text())
    assert len(records) == 2 * 2 * 3  # (gradcam, random) × 2 contrasts × 3 scores
    assert {"auc_deletion", "auc_insertion", "n"} <= set(records[0])
    md = (out / "faithfulness.md").read_text()
    assert "| random | weighted |" in md and "Average drop" in md
    assert (out / "faithfulness_zeros_contrast.png").exists()
    rows = (out / "faithfulness_samples.jsonl").read_text().splitlines()
    assert len(rows) == 2 * 2 * 2  # images × (gradcam, random) × contrasts, one baseline


def test_the_ray_engine_writes_what_the_local_one_does(local_ray: object, tmp_path) -> None:
    """``evaluate faithfulness --engine ray``: the batches run in two Ray workers of one CPU each, this process writing
    the rows; the tables and every per-image row equal a local run at one thread (a thread count changes float sums'
    order)."""
    args = ["evaluate", "faithfulness", "--limit", "2", "--batch-size", "1", "--method", "gradcam", "--contrast",
            "original", "weighted", "--baseline", "zeros", "--fractions", "0.5", "1"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run([*args, "--out", str(tmp_path / "local")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert run([*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--concurrency", "2"]) == 0
    local, ray = ((tmp_path / d / "faithfulness.json").read_text() for d in ("local", "ray"))
    assert json.loads(local) == json.loads(ray)

    def rows(d: str) -> list[dict]:
        lines = (tmp_path / d / "faithfulness_samples.jsonl").read_text().splitlines()
        return sorted((json.loads(x) for x in lines), key=lambda r: json.dumps(r, sort_keys=True))

    assert rows("local") == rows("ray") and len(rows("ray")) == 2 * 2 * 2  # images × maps × contrasts


def test_classcontrast_ray_faithfulness_equals_the_local_run(local_ray: object) -> None:
    """`classcontrast.ray.faithfulness` on a model whose curves are known exactly (float64): every record equal."""
    from classcontrast.ray import faithfulness

    torch.manual_seed(0)
    bundle = _bundle(Linear(torch.randn(3, 4, 4)), 4, 3)
    rng = np.random.default_rng(0)
    src = _source([rng.integers(0, 256, (4, 4), dtype=np.uint8) for _ in range(5)], [0, 1, 2, 0, 1])
    args = (["gradient_x_input", "gradient"], ["original", "weighted"], ["zeros"], ["logit", "probability"],
            [0.25, 0.5, 1.0])
    local = run_faithfulness(bundle, src, *args, batch_size=2)
    assert faithfulness(bundle, src, *args, batch_size=2, concurrency=2) == local
    assert local["records"][0]["n"] == 5
