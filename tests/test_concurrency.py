"""Many threads, one model: every call gets exactly what a lone call gets, and the model ends as found."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import timm
import torch
import torchvision
from torch import nn

import classcontrast as cc
from tests.test_hygiene import _assert_untouched, _snapshot

# (method, contrasts, targets, options); the last ones raise on purpose
CALLS = [
    ("gradcam", ["original", "weighted"], cc.TopK(2), {}),
    ("gradient", ["max", "mean"], [3, 1], {}),
    ("xgradcam", ["weighted", cc.Foil(5)], cc.TopK(3), {"layer": "layer3"}),
    ("fullgrad", ["probability"], None, {}),
    ("linear_approx", ["weighted"], 7, {"layer": "layer2.1"}),
    ("gradcam", ["weighted"], 999_999, {}),  # raises: class out of range
    ("gradcam", ["weighted"], None, {"layer": "nope"}),  # raises: unknown layer
]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    # a state that must survive: some modules training, some parameters frozen
    model.train()
    model.layer1.eval()
    model.conv1.weight.requires_grad_(False)
    return model


def _call(model: nn.Module, x: torch.Tensor, i: int) -> dict[str, torch.Tensor] | str:
    method, contrasts, targets, options = CALLS[i % len(CALLS)]
    try:
        res = cc.explain(model, x, method, contrasts, targets, **options)
    except cc.ClassContrastError as e:
        return str(e)
    return {k: v.maps for k, v in res.items()}


def _same(a: dict[str, torch.Tensor] | str, b: dict[str, torch.Tensor] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_threads_on_one_model_get_lone_call_results(resnet: nn.Module) -> None:
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    before = _snapshot(resnet)
    reference = [_call(resnet, x, i) for i in range(len(CALLS))]
    assert sum(isinstance(r, str) for r in reference) == 2  # two calls raise, the others work
    results: dict[tuple[int, int], object] = {}

    def worker(w: int) -> None:
        for j in range(len(CALLS) * 2):
            i = (w + j) % len(CALLS)  # every thread walks the calls from another starting point
            results[(w, i, j)] = _call(resnet, x, i)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 6 * len(CALLS) * 2
    for (_, i, _), r in results.items():
        assert _same(r, reference[i]), CALLS[i]
    _assert_untouched(resnet, before)


def test_many_short_calls_from_many_threads_finish(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    tiny.train()
    before = _snapshot(tiny)
    ref = cc.explain(tiny, tiny_x, "gradcam", "weighted").maps
    errors: list[str] = []

    def worker() -> None:
        for _ in range(40):
            if not torch.equal(cc.explain(tiny, tiny_x, "gradcam", "weighted").maps, ref):
                errors.append("different maps")

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(worker) for _ in range(16)]:
            f.result(timeout=120)
    assert not errors and time.monotonic() - start < 120
    _assert_untouched(tiny, before)


class Rendezvous(nn.Module):
    """Waits in its forward pass until every party of the barrier is in its own forward pass."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.barrier.wait(timeout=20)
        return x


def test_different_models_run_at_the_same_time(tiny: nn.Module) -> None:
    """Two models, two threads: both forward passes must be under way at once (a global lock would
    make the barrier time out)."""
    barrier = threading.Barrier(2)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    models = [nn.Sequential(Rendezvous(barrier), TinyCopy(tiny)) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        outs = [f.result(timeout=60) for f in [pool.submit(cc.explain, m, x, "gradient") for m in models]]
    torch.testing.assert_close(outs[0].maps, outs[1].maps)


def TinyCopy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


class Counter(nn.Module):
    """Counts how many forward passes are under way at once."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.01)
        with self.lock:
            self.now -= 1
        return x


def test_a_model_and_a_wrapper_around_it_exclude_each_other(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    counter = Counter()
    inner = nn.Sequential(counter, tiny)
    wrapper = nn.Sequential(nn.Identity(), inner)  # shares every module of `inner`
    before = _snapshot(inner)
    ref = cc.explain(inner, tiny_x, "gradcam", "weighted", layer="1.features.3").maps

    def call(model: nn.Module, layer: str) -> torch.Tensor:
        return cc.explain(model, tiny_x, "gradcam", "weighted", layer=layer).maps

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call, *((inner, "1.features.3") if i % 2 else (wrapper, "1.1.features.3")))
                   for i in range(24)]
        outs = [f.result(timeout=60) for f in futures]
    assert counter.most == 1  # never two explained forward passes at once on the shared modules
    assert all(torch.equal(o, ref) for o in outs)
    _assert_untouched(inner, before)


class Gate(nn.Module):
    """In the explaining thread, waits until another thread has run the same model to the end."""

    def __init__(self) -> None:
        super().__init__()
        self.owner: int | None = None
        self.other_done = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if threading.get_ident() == self.owner:
            assert self.other_done.wait(timeout=20)
        return x


def test_a_plain_forward_in_another_thread_is_not_affected(tiny: nn.Module, tiny_x: torch.Tensor) -> None:
    """While one thread explains (hooks registered), another thread's ordinary forward pass runs
    undisturbed and does not disturb the explanation."""
    gate = Gate()
    model = nn.Sequential(tiny.features, gate, nn.Sequential(tiny.pool, nn.Flatten(), tiny.fc)).eval()
    ref_maps = cc.explain(model, tiny_x, "gradcam", "weighted", layer="0.3").maps
    with torch.no_grad():
        ref_out = model(tiny_x)

    def explainer() -> torch.Tensor:
        gate.owner = threading.get_ident()
        return cc.explain(model, tiny_x, "gradcam", "weighted", layer="0.3").maps

    def plain() -> torch.Tensor:
        time.sleep(0.2)  # the explainer is inside its forward pass by now, hooks in place
        with torch.no_grad():
            out = model(tiny_x)
        gate.other_done.set()
        return out

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(explainer), pool.submit(plain)
        maps, out = a.result(timeout=60), b.result(timeout=60)
    assert torch.equal(maps, ref_maps) and torch.equal(out, ref_out)


def test_a_threaded_http_handler_pool_around_explain() -> None:
    """A web service pattern: a ThreadingHTTPServer whose handlers all explain with one shared model."""
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=20).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    methods = ["gradcam", "gradient", "xgradcam", "linear_approx"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            _, method, target = self.path.split("/")
            try:
                ex = cc.explain(model, x, method, ["weighted", "original"], int(target))
                body = {"maps": {k: v.maps.flatten().tolist() for k, v in ex.items()}}
            except cc.ClassContrastError as e:
                body = {"error": str(e)}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    requests = [(methods[i % 4], (i * 7) % 23) for i in range(40)]  # targets 20, 21, 22 are errors

    def get(method: str, target: int) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{method}/{target}", timeout=60) as r:
            return json.loads(r.read())

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: get(*r), requests))
    finally:
        server.shutdown()
        server.server_close()
    before = _snapshot(model)
    for (method, target), answer in zip(requests, answers, strict=True):
        if target >= 20:
            assert "out of range" in answer["error"]
            continue
        lone = cc.explain(model, x, method, ["weighted", "original"], target)
        for k, v in lone.items():
            assert answer["maps"][k] == v.maps.flatten().tolist(), (method, target, k)
    _assert_untouched(model, before)
