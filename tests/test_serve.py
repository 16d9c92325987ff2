"""``classcontrast serve`` on a real uvicorn server (one per session, the `server` fixture) driven by httpx: the KServe
V1 answers equal the library's own calls (the bundle's softmax, `cc.explain` per image), a burst of concurrent
mixed requests is answered as one-at-a-time requests are (micro-batched: fewer calls than requests), and every bad
request gets its code and a one-line JSON error while the server keeps answering."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc
from classcontrast.serve.protocol import decode_map
from tests.test_cli import run

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

NAMES = ("chelsea", "coffee", "astronaut", "rocket")


def _png(name: str, size: tuple[int, int] = (160, 120)) -> bytes:
    buf = io.BytesIO()
    cc.sample_image(name).convert("RGB").resize(size).save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _post(url: str, body: Any, **kw: Any) -> Any:
    return httpx.post(url, json=body, timeout=120, **kw)


def test_health_and_model_status(server: str) -> None:
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server}/v1/models/lite0").json() == {"name": "lite0", "ready": True}
    r = httpx.get(f"{server}/v1/models/nope")
    assert r.status_code == 404 and "no model 'nope'" in r.json()["error"]
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_predict_equals_the_bundles_softmax(server: str, embedded: cc.ModelBundle) -> None:
    blobs = [_png("chelsea"), _png("coffee", (90, 200))]
    body = {"instances": [{"image_bytes": {"b64": _b64(blobs[0])}}, {"data": _b64(blobs[1])}],
            "parameters": {"top_k": 3}}
    got = _post(f"{server}/v1/models/lite0:predict", body).json()["predictions"]
    for blob, answer in zip(blobs, got, strict=True):
        x = embedded.transform(Image.open(io.BytesIO(blob)).convert("RGB"))[None]
        with torch.no_grad():
            p = torch.softmax(embedded.model(x).double(), 1)[0]
        top = p.topk(3)
        assert answer["indices"] == top.indices.tolist()
        assert answer["classes"] == [embedded.categories[i] for i in top.indices.tolist()]
        np.testing.assert_allclose(answer["probabilities"], top.values.numpy(), rtol=1e-6)


@pytest.mark.parametrize(("method", "options"), [("gradcam", {}), ("integrated_gradients", {"steps": 4}),
                                                  ("occlusion", {"window": 56, "stride": 56})])
def test_explain_maps_equal_cc_explain(server: str, embedded: cc.ModelBundle, method: str,
                                       options: dict[str, Any]) -> None:
    blob = _png("chelsea")
    body = {"instances": [_b64(blob)], "parameters": {"method": method, "contrasts": ["weighted", "foil:tabby"],
                                                      "targets": ["tiger cat"], **options}}
    rows = _post(f"{server}/v1/models/lite0:explain", body).json()["explanations"][0]
    x = embedded.transform(Image.open(io.BytesIO(blob)).convert("RGB"))[None]
    want = cc.explain(embedded, x, method, ["weighted", cc.Foil("tabby")], "tiger cat", **options)
    assert [r["contrast"] for r in rows] == ["weighted", "foil:tabby"]
    for r, ex in zip(rows, want.values(), strict=True):
        assert r["method"] == method and r["target_name"] == "tiger cat" and r["unit"]["kind"] == "image"
        assert r["score"] == pytest.approx(float(ex.scores[0, 0]), rel=1e-6, abs=1e-7)
        got, ref = decode_map(r["map"]), ex.maps[0, 0].numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * float(np.abs(ref).max()))


def _mixed(i: int) -> tuple[str, dict[str, Any]]:
    """Request ``i`` of the burst: predictions and explanations of four photos, two contrasts' sets, list maps."""
    image = _b64(_png(NAMES[i % 4], (120 + 8 * (i % 3), 120)))
    if i % 4 == 3:
        return "predict", {"instances": [image], "parameters": {"top_k": 2}}
    contrasts = ["weighted", "original"] if i % 2 else ["weighted"]
    return "explain", {"instances": [image], "parameters": {"contrasts": contrasts, "maps": "layer",
                                                            "map_format": "list"}}


def test_a_burst_of_concurrent_requests_equals_one_at_a_time(server: str, embedded: cc.ModelBundle) -> None:
    """32 concurrent mixed requests: all answered, each equal to the same request made alone; the explanations ran
    in fewer calls than requests (micro-batching); the model is left as found."""
    before = _explain_calls(server)
    requests = [_mixed(i) for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        burst = list(pool.map(lambda r: _post(f"{server}/v1/models/lite0:{r[0]}", r[1]), requests))
    assert all(r.status_code == 200 for r in burst), [r.text for r in burst if r.status_code != 200][:1]
    calls, inputs = (a - b for a, b in zip(_explain_calls(server), before, strict=True))
    assert inputs == 24 and calls < inputs  # 24 explain requests of one image each, batched
    for (verb, body), answer in zip(requests[:8], burst[:8], strict=True):  # one of each kind, made again alone
        alone = _post(f"{server}/v1/models/lite0:{verb}", body).json()
        got = answer.json()
        if verb == "predict":
            np.testing.assert_allclose(got["predictions"][0]["probabilities"],
                                       alone["predictions"][0]["probabilities"], rtol=1e-5)
            continue
        for a, b in zip(got["explanations"][0], alone["explanations"][0], strict=True):
            assert (a["contrast"], a["target"]) == (b["contrast"], b["target"])
            ref = np.asarray(b["layer_map"])
            np.testing.assert_allclose(np.asarray(a["layer_map"]), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    assert not embedded.model.training and not any(p.requires_grad is False for p in embedded.model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in embedded.model.modules())


def _explain_calls(server: str) -> tuple[float, float]:
    """(explain calls made, inputs they explained) from /metrics."""
    lines = httpx.get(f"{server}/metrics").text.splitlines()

    def total(name: str) -> float:
        return sum(float(line.split()[-1]) for line in lines if line.startswith(f"classcontrast_batch_inputs_{name}"))

    return total("count"), total("sum")


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, "not JSON"),
    ({"instances": "x"}, 400, "'instances' must be a non-empty list"),
    ({"instances": [{"url": "file:///etc/passwd"}]}, 400, "instance 0: expected"),
    ({"instances": ["@@@"]}, 400, "not valid base64"),
    ({"instances": [base64.b64encode(b"not an image").decode()]}, 400, "not an image Pillow can read"),
    ({"instances": ["QQ=="], "parameters": {"method": "nope"}}, 400, "unknown method 'nope'"),
    ({"instances": ["QQ=="], "parameters": {"steps": 4}}, 400, "unknown parameter 'steps'"),
    ({"instances": ["QQ=="], "parameters": {"maps": "all"}}, 400, "parameters.maps"),
    ({"instances": ["QQ=="], "parameters": {"top_k": "3"}}, 400, "parameters.top_k"),
])
def test_bad_requests_get_their_code_and_one_line(server: str, body: Any, status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(f"{server}/v1/models/lite0:explain", content=content, timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code == status and message in r.json()["error"], r.text
    assert len(r.json()["error"].splitlines()) == 1 and "Traceback" not in r.text
    assert httpx.get(f"{server}/v2/health/live").status_code == 200


def test_oversized_unknown_class_and_wrong_verbs(server: str) -> None:
    big = httpx.post(f"{server}/v1/models/lite0:predict", content=b"x" * (21 * 2**20), timeout=60,
                     headers={"content-type": "application/json"})
    assert big.status_code == 413 and "larger than 20 MB" in big.json()["error"]
    body = {"instances": [_b64(_png("coffee"))], "parameters": {"targets": ["no such class"]}}
    r = _post(f"{server}/v1/models/lite0:explain", body)
    assert r.status_code == 400 and "no such class" in r.json()["error"]
    assert httpx.get(f"{server}/v1/models/lite0:predict").status_code == 405
    assert _post(f"{server}/v1/models/other:predict", {"instances": ["QQ=="]}).status_code == 404
    assert httpx.get(f"{server}/v2/health/ready").status_code == 200


def test_a_token_guards_everything_but_health(embedded: cc.ModelBundle) -> None:
    from fastapi.testclient import TestClient

    from classcontrast.serve import ServedModel, create_app

    client = TestClient(create_app({"m": ServedModel("m", embedded)}, token="s3cret"))
    assert client.get("/v1/models/m").status_code == 401
    assert client.get("/v1/models/m", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/models/m", headers={"Authorization": "Bearer s3cret"}).json()["ready"]
    assert client.get("/v2/health/live").status_code == 200


def test_serve_refuses_an_open_host_without_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    from classcontrast.cli.serve_cmd import named

    assert run(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--token" in err
    assert named(["efficientnet_lite0", "r18=torchvision:resnet18", "hf:org/vit-tiny"]) == {
        "efficientnet_lite0": "efficientnet_lite0", "r18": "torchvision:resnet18", "vit-tiny": "hf:org/vit-tiny"}
    assert run(["serve", "--model", "a=x", "--model", "a=y"]) == 2
    assert "the name 'a' is taken" in capsys.readouterr().err


def _metric(server: str, name: str) -> float:
    lines = httpx.get(f"{server}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name))


def test_a_request_its_client_gives_up_stops_its_work(server: str, embedded: cc.ModelBundle) -> None:
    """Integrated Gradients over 4,000 steps (minutes of work here): the client gives up after a second, and the
    server is idle again within seconds — its forward passes stopped, the model left without a hook."""
    import time

    body = {"instances": [_b64(_png("coffee"))],
            "parameters": {"method": "integrated_gradients", "steps": 4000, "internal_batch_size": 8}}
    given_up = _metric(server, 'classcontrast_requests_total{code="499"')
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{server}/v1/models/lite0:explain", json=body, timeout=1.0)
    deadline = time.time() + 20
    while time.time() < deadline and _metric(server, "classcontrast_queue_depth") > 0:
        time.sleep(0.1)
    assert _metric(server, "classcontrast_queue_depth") == 0
    assert _metric(server, 'classcontrast_requests_total{code="499"') == given_up + 1
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in embedded.model.modules())


def test_the_live_explorer_in_a_browser(server: str, embedded: cc.ModelBundle) -> None:
    """Chromium drives the page at /: a bundled sample, then a target, a foil and a method clicked, then an upload;
    each drawn map's values, read back from the page, equal `cc.explain` for what was clicked; every request stays
    on the server; the model is left as found."""
    from tools.browser import Browser

    def image(name: str) -> Any:
        return embedded.transform(cc.sample_image(name).convert("RGB"))[None]

    def after(b: Any, action: Any) -> np.ndarray:
        """The map drawn after ``action``: the page counts the maps it has drawn."""
        n = b.eval("window.ccLive.shown")
        action()
        b.wait(f"window.ccLive.shown > {n} && document.querySelector('.cc-viewer').dataset.ready === '1'", timeout=60)
        return np.asarray(b.eval("Array.from(window.ccLive.map.values)"), dtype=np.float32).reshape(224, 224)

    def same(got: np.ndarray, ex: Any) -> None:
        ref = ex.maps[0, 0].numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))

    with Browser() as b:
        b.open(f"{server}/")
        got = after(b, lambda: b.click('button[data-sample="chelsea"]'))
        x = image("chelsea")
        with torch.no_grad():
            top = embedded.model(x)[0].topk(2).indices.tolist()
        assert b.eval("window.ccLive.target") == top[0]
        same(got, cc.explain(embedded, x, "gradcam", "weighted", top[0]))
        got = after(b, lambda: b.click(f'button[data-control="foil"][data-value="{top[1]}"]'))
        assert b.eval("document.querySelector('#cc-question').textContent") == \
            f"Why {embedded.categories[top[0]]} rather than {embedded.categories[top[1]]}?"
        same(got, cc.explain(embedded, x, "gradcam", cc.Foil(top[1]), top[0]))
        got = after(b, lambda: b.click('button[data-control="method"][data-value="gradient"]'))
        same(got, cc.explain(embedded, x, "gradient", cc.Foil(top[1]), top[0]))
        upload = """fetch('/explorer/samples/coffee.png').then(r => r.blob()).then(blob => {
                    const files = new DataTransfer();
                    files.items.add(new File([blob], 'mine.png', {type: 'image/png'}));
                    const input = document.querySelector('#cc-file'); input.files = files.files;
                    input.dispatchEvent(new Event('change')); }); true"""
        got = after(b, lambda: b.eval(upload))
        x = image("coffee")
        with torch.no_grad():
            first = int(embedded.model(x)[0].argmax())
        same(got, cc.explain(embedded, x, "gradient", "weighted", first))
        shot = b.screenshot()
        urls = b.requests()
    assert urls and all(u.startswith(server) or u.startswith(("data:", "blob:")) for u in urls), urls
    assert len(shot) > 10_000
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in embedded.model.modules())


def test_a_full_queue_and_a_slow_request_get_503_and_504(embedded: cc.ModelBundle) -> None:
    """A queue with no room answers 503 with Retry-After; a request past the time limit 504, and its work stops (the
    model is left without a hook)."""
    from fastapi.testclient import TestClient

    from classcontrast.serve import Limits, ServedModel, create_app

    body = {"instances": [_b64(_png("coffee"))],
            "parameters": {"method": "integrated_gradients", "steps": 4000, "internal_batch_size": 8}}
    full = TestClient(create_app({"m": ServedModel("m", embedded)}, limits=Limits(max_queue=0)))
    r = full.post("/v1/models/m:explain", json=body)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
    slow = TestClient(create_app({"m": ServedModel("m", embedded)}, limits=Limits(timeout_s=0.5)))
    r = slow.post("/v1/models/m:explain", json=body)
    assert r.status_code == 504 and "longer than 0.5 s" in r.json()["error"]
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in embedded.model.modules())


def test_an_image_past_the_pixel_budget_is_a_400(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader's pixel budget (Pillow's decompression-bomb limit) holds for a request's image: one line, no work."""
    body = {"instances": [_b64(_png("chelsea"))]}
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the server runs in this process: a 160×120 image is over
    r = _post(f"{server}/v1/models/lite0:predict", body)
    assert r.status_code == 400 and "too large to read safely" in r.json()["error"], r.text
