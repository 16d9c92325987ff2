"""On a CUDA device, every result equals the same call on the CPU; on every device, the engine makes no
host copy in its hot loop.

The tests marked ``cuda`` run only where a CUDA device is present (``pytest -m cuda``, and
``make gpu-check`` runs them); elsewhere they are skipped with the reason "no CUDA device", never
passed silently. ``CC_CUDA_TEST_DEVICE=cpu pytest -m cuda`` runs the same test code on the CPU.
Tolerances: float64 where a method allows it (the CNN methods: 1e-9); float32 models (the embedded
EfficientNet, the experiments) differ between cuDNN and oneDNN kernels in the last bits, so 1e-4
relative on maps and 1e-5 on probabilities.
"""

from __future__ import annotations

import collections
import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

import classcontrast as cc
from tests.conftest import TinyCNN, randomize_bn
from tests.test_hygiene import _assert_untouched, _snapshot

# The subset's device: CUDA. CC_CUDA_TEST_DEVICE=cpu runs the same code on the CPU (a rehearsal of the
# test code itself before a GPU is at hand: every comparison is then CPU against CPU).
DEVICE = os.environ.get("CC_CUDA_TEST_DEVICE", "cuda")
KIND = torch.device(DEVICE).type
cuda = pytest.mark.skipif(KIND == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")
# top-3 targets meet the foil class now and then: the zero map it then gets is tested elsewhere
pytestmark = pytest.mark.filterwarnings("ignore:foil .* is also the target")

CNN_METHODS = ["gradient", "gradient_x_input", "linear_approx", "gradcam", "xgradcam", "fullgrad",
               "integrated_gradients", "smoothgrad", "lrp"]
VIT_METHODS = ["vit_gradcam", "attention_rollout"]
CONTRASTS = ["original", "mean", "max", "weighted", "probability", cc.Foil(2)]
OPTIONS = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3}}
SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(TinyCNN(num_classes=7, width=6)).double().eval()


def _vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=2, num_classes=6, img_size=32,
                             patch_size=8).eval()


@contextmanager
def counted() -> Iterator[collections.Counter[str]]:
    """Count the calls that copy a tensor to the host or wait for the device (item, cpu, tolist, numpy,
    bool/float/int of a tensor) while the block runs."""
    counts: collections.Counter[str] = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in SYNCS}

    def wrap(name: str) -> object:
        f = originals[name]

        def call(self: torch.Tensor, *args: object, **kwargs: object) -> object:
            counts[name] += 1
            return f(self, *args, **kwargs)
        return call

    for name in SYNCS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield counts
    finally:
        for name, f in originals.items():
            setattr(torch.Tensor, name, f)


@pytest.mark.parametrize("method", CNN_METHODS + VIT_METHODS)
def test_no_host_copy_in_the_hot_loop(method: str) -> None:
    """One call: one device sync in all (the input's finiteness check, before the loop), however many
    contrasts and targets. SmoothGrad hashes each image's bytes on the host to seed its noise (the same
    noise on every device): one copy per image, outside the backward passes."""
    vit = method in VIT_METHODS
    model = _vit() if vit else _cnn()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float32 if vit else torch.float64)
    cc.explain(model, x, method, "weighted", **OPTIONS.get(method, {}))  # warm-up: lazy imports, layer lookup
    with counted() as n:
        cc.explain(model, x, method, CONTRASTS, cc.TopK(3), **OPTIONS.get(method, {}))
    copies = n["cpu"] + n["item"] + n["tolist"] + n["numpy"]
    if method == "smoothgrad":
        assert n["cpu"] == x.shape[0] and n["item"] + n["tolist"] == 0, dict(n)
    else:
        assert copies == 0, dict(n)
    assert n["__bool__"] <= 1, dict(n)


# ---------------------------------------------------------------------------------------------------------
# the CUDA subset


def _maps(res: cc.Explanations) -> dict[str, torch.Tensor]:
    return {k: v.maps.detach().cpu() for k, v in res.items()}


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("method", CNN_METHODS)
def test_cnn_methods_on_cuda_equal_cpu_in_float64(method: str) -> None:
    model = _cnn()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = _maps(cc.explain(model, x, method, CONTRASTS, cc.TopK(2), **OPTIONS.get(method, {})))
    gpu = model.to(DEVICE)
    before = _snapshot(gpu)
    got = _maps(cc.explain(gpu, x.to(DEVICE), method, CONTRASTS, cc.TopK(2), **OPTIONS.get(method, {})))
    _assert_untouched(gpu, before)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-9, atol=1e-12, msg=f"{method}/{k}")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("method", VIT_METHODS)
def test_vit_methods_on_cuda_equal_cpu(method: str) -> None:
    model = _vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = _maps(cc.explain(model, x, method, CONTRASTS, cc.TopK(2)))
    got = _maps(cc.explain(model.to(DEVICE), x.to(DEVICE), method, CONTRASTS, cc.TopK(2)))
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5 * float(ref[k].abs().max()), msg=k)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_inputs(dtype: torch.dtype) -> None:
    model = copy.deepcopy(_cnn()).float().to(DEVICE)
    x = torch.randn(2, 3, 16, 16, device=DEVICE)
    full = cc.explain(model, x, "gradcam", "weighted", cc.TopK(2)).maps
    with torch.autocast(KIND, dtype=dtype):
        low = cc.explain(model, x, "gradcam", "weighted", cc.TopK(2)).maps
    assert torch.isfinite(low).all()
    cos = torch.nn.functional.cosine_similarity(low.float().flatten(1), full.flatten(1))
    assert (cos > 0.98).all(), cos


@cuda
@pytest.mark.cuda
def test_batched_vjps_equal_looped_ones() -> None:
    model = _cnn().to(DEVICE)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, device=DEVICE)
    for method in ("gradcam", "gradient", "fullgrad"):
        a = _maps(cc.explain(model, x, method, CONTRASTS, cc.TopK(3), batched=True))
        b = _maps(cc.explain(model, x, method, CONTRASTS, cc.TopK(3), batched=False))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-10, atol=1e-12)


@cuda
@pytest.mark.cuda
def test_experiments_on_cuda_equal_cpu(embedded: cc.ModelBundle, tmp_path: Path) -> None:
    """Audit, explorer page, faithfulness (blur, zeros, ROAD) and perturbation on a few bundled photos."""
    from classcontrast.data.sources import bundled_source
    from classcontrast.evaluation import run_masking, run_perturbation
    from classcontrast.evaluation.faithfulness import run_faithfulness

    source = bundled_source().select(limit=4, seed=0)
    cpu = embedded
    gpu = copy.copy(embedded)
    gpu.model = copy.deepcopy(embedded.model).to(DEVICE)
    results = {}
    for name, bundle, device in (("cpu", cpu, "cpu"), ("cuda", gpu, DEVICE)):
        out = tmp_path / name
        a = cc.audit(bundle, source, out / "audit", pairs=2, examples=1, batch_size=2, device=device)
        f = run_faithfulness(bundle, source, ["gradcam"], ["weighted", "original"], ["blur", "zeros", "road"],
                             ["probability"], [0.25, 0.5, 1.0], batch_size=2, device=device,
                             log_path=out / "f.jsonl")
        p = run_perturbation(bundle, source, ["weighted"], [0.003], [2], batch_size=2, device=device,
                             log_path=out / "p.jsonl")
        m, _ = run_masking(bundle, source, ["gradcam"], ["blur"], threshold=0.0, batch_size=2, device=device)
        again = run_perturbation(bundle, source, ["weighted"], [0.003], [2], batch_size=2, device=device,
                                 log_path=out / "p.jsonl")  # resumed: every row reused, the same numbers
        assert again == p
        assert (out / "audit" / "audit.html").stat().st_size > 1000
        results[name] = (a, f, p, m)
    (a0, f0, p0, m0), (a1, f1, p1, m1) = results["cpu"], results["cuda"]
    assert [(q.true, q.predicted) for q in a0.pairs] == [(q.true, q.predicted) for q in a1.pairs]
    for e in a0.maps:
        for meth, arr in a0.maps[e]["maps"].items():
            np.testing.assert_allclose(a1.maps[e]["maps"][meth], arr, rtol=1e-3, atol=1e-4 * np.abs(arr).max())
    for r0, r1 in zip(f0["records"], f1["records"], strict=True):
        assert r0["method"] == r1["method"] and r0["baseline"] == r1["baseline"]
        assert r0["auc_deletion"] == pytest.approx(r1["auc_deletion"], abs=2e-3)
    for r0, r1 in zip(p0, p1, strict=True):
        assert r0["delta_probability"] == pytest.approx(r1["delta_probability"], abs=1e-4)
    assert json.dumps([r["n"] for r in m0]) == json.dumps([r["n"] for r in m1])


@cuda
@pytest.mark.cuda
def test_torchrun_one_process_on_cuda_equals_a_plain_run(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    config = tmp_path / "c.toml"
    config.write_text(f'[run]\nthreads = 1\ndevice = "{DEVICE}"\n[[experiment]]\nkind = "perturbation"\nname = "p"\n'
                      "limit = 4\nbatch_size = 2\nepsilons = [0.003]\nsteps = [1]\n")
    cli = [sys.executable, "-m", "classcontrast", "reproduce", str(config)]
    subprocess.run([*cli, "--out", str(tmp_path / "plain")], check=True, capture_output=True)
    subprocess.run([torchrun, "--nproc_per_node=1", "-m", "classcontrast", "reproduce", str(config), "--out",
                    str(tmp_path / "torchrun")], check=True, capture_output=True)
    a = json.loads((tmp_path / "plain" / "p" / "perturbation.json").read_text())
    b = json.loads((tmp_path / "torchrun" / "p" / "perturbation.json").read_text())
    assert a == b
