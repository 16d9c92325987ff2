"""``classcontrast serve`` under load: requests/s and p50 / p99 latency of ``:explain`` at concurrency 1, 4 and 16,
with micro-batching on (up to 16 images, 5 ms of waiting) and off (``--max-batch 1``), against the library called
in a loop in this process (the same images, one ``cc.explain`` per request).

Each request is one 224×224 PNG of the bundled photos, GradCAM with the weighted contrast and ``maps=layer``
(what an interactive client asks); the server is ``classcontrast serve`` in a process of its own on a loopback port,
the clients threads of this process, each with its own kept-alive httpx connection. On 2 CPU cores the clients
share the cores with the server.

    python benchmarks/serve.py                    # 64 requests per setting
    python benchmarks/serve.py --requests 32
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

import classcontrast as cc

NAMES = ("chelsea", "coffee", "astronaut", "rocket")


def images() -> list[bytes]:
    out = []
    for name in NAMES:
        buf = io.BytesIO()
        cc.sample_image(name).convert("RGB").resize((224, 224)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def start(max_batch: int) -> tuple[subprocess.Popen[bytes], str]:
    """``classcontrast serve`` in its own process (micro-batching up to ``max_batch`` images), once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "classcontrast", "serve", "--model", "m=efficientnet_lite0",
                             "--port", str(port), "--max-batch", str(max_batch), "--wait-ms", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    return proc, f"{base}/v1/models/m:explain"


def load(url: str, blobs: list[bytes], n: int, concurrency: int) -> tuple[float, list[float]]:
    """(requests/s, each request's latency in s) of ``n`` requests from ``concurrency`` clients."""
    bodies = [{"instances": [base64.b64encode(blobs[i % len(blobs)]).decode()],
               "parameters": {"method": "gradcam", "contrasts": ["weighted"], "maps": "layer"}} for i in range(n)]
    latencies: list[float] = []
    local = threading.local()

    def one(body: dict[str, Any]) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=300)  # one kept-alive connection per client thread
        t0 = time.perf_counter()
        r = local.client.post(url, json=body)
        r.raise_for_status()
        latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, bodies))
    return n / (time.perf_counter() - t0), latencies


def loop(bundle: cc.ModelBundle, blobs: list[bytes], n: int) -> float:
    """Requests/s of the library called in a loop: decode, preprocess, one explain per request."""
    t0 = time.perf_counter()
    for i in range(n):
        x = bundle.transform(Image.open(io.BytesIO(blobs[i % len(blobs)])).convert("RGB"))[None]
        cc.explain(bundle, x, "gradcam", ["weighted"]).rows(maps="layer")
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=64)
    args = ap.parse_args()
    bundle = cc.load_model("efficientnet_lite0")
    blobs = images()
    loop(bundle, blobs, 4)  # warm-up
    base = loop(bundle, blobs, args.requests)
    print(f"library in a loop: {base:.1f} requests/s")
    print("| batching | concurrency | requests/s | × the loop | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for max_batch in (16, 1):
        server, url = start(max_batch)
        load(url, blobs, 4, 1)  # warm-up
        for concurrency in (1, 4, 16):
            rate, lat = load(url, blobs, args.requests, concurrency)
            q = statistics.quantiles(lat, n=100)
            print(f"| {'on' if max_batch > 1 else 'off'} | {concurrency} | {rate:.1f} | {rate / base:.2f} | "
                  f"{1000 * statistics.median(lat):.0f} | {1000 * q[98]:.0f} |")
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
