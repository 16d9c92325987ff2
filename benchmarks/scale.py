"""``explain-dataset`` at scale: images/s in one process and on Ray with 1 and 2 workers, against the floor; each Ray
worker's resident memory over the run (flat: no growth, the leak peers' users report over ImageNet-val); Ray's own
overhead per batch.

* Data: N JPEG files (default 2,000) cut from the bundled photos (random crops, sides 96-320 px) in two class
  folders, written once to a temporary folder.
* The floor: plain torch doing explain-dataset's model work and nothing else, in this process: decode and
  preprocess each image (PIL and the bundle's transform), one forward pass with GradCAM's layer kept, one
  ``torch.autograd.grad`` of the weighted objective to it, the map (a weighted sum of channels, upsampled).
* One process: ``explain_dataset`` on the local engine (GradCAM, original and weighted, maps at the input size,
  float32, 8 images a part), written to Parquet.
* Ray: the same request on a local Ray of 2 CPUs with 1 and 2 workers (each worker one CPU, one torch thread).
* Memory: each Ray worker process's resident memory, sampled every 0.25 s: its peak over the second tenth of the
  run (the first holds the model's loading) against its peak over the last tenth.
* Ray overhead: small rows through a ``map_batches`` stage that returns its batch, over N and N / 4 rows: the
  difference per batch (the pool's start cancels out), and the start itself.

    python benchmarks/scale.py                    # 2,000 images
    python benchmarks/scale.py --images 200       # a quick look

Targets (issue): Ray with 2 workers faster than one process; memory flat (growth under 5% of a worker's).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import classcontrast as cc
from classcontrast.layers import default_feature_layer, find_module
from classcontrast.ray import DatasetRequest, explain_dataset

BATCH = 8


def make_images(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs in two class folders (tabby, espresso), random crops of the bundled photos."""
    rng = random.Random(seed)
    photos = {"tabby": cc.sample_image("chelsea").convert("RGB"), "espresso": cc.sample_image("coffee").convert("RGB")}
    for cls in photos:
        (root / cls).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cls = "tabby" if i % 2 == 0 else "espresso"
        img = photos[cls]
        w, h = img.size
        cw, ch = rng.randint(w // 3, w), rng.randint(h // 3, h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        side = rng.randint(96, 320)
        img.crop((x, y, x + cw, y + ch)).resize((side, max(96, side * ch // cw))).save(root / cls / f"{i:05d}.jpg")
    return root


def floor(bundle: cc.ModelBundle, files: list[Path]) -> float:
    """Seconds for the model work alone over ``files`` (see the module docstring)."""
    probe = bundle.transform(cc.load_image(files[0]))[None]
    _, layer = find_module(bundle.model, default_feature_layer(bundle.model, probe), probe)
    kept: list[torch.Tensor] = []

    def hook(_m: Any, _i: Any, out: torch.Tensor) -> torch.Tensor:
        kept.append(out.detach().requires_grad_())
        return kept[-1]

    handle = layer.register_forward_hook(hook)
    t0 = time.perf_counter()
    try:
        for f in files:
            kept.clear()
            x = bundle.transform(cc.load_image(f))[None]
            y = bundle.model(x)
            t = y.argmax(1)
            yt = y.gather(1, t[:, None])[:, 0]
            others = y.scatter(1, t[:, None], float("-inf"))
            objective = (yt - torch.logsumexp(others, 1)).sum()
            (g,) = torch.autograd.grad(objective, kept[0])
            cam = (g.mean((2, 3), keepdim=True) * kept[0]).sum(1, keepdim=True)
            F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    finally:
        handle.remove()
    return time.perf_counter() - t0


class Watch:
    """Every 0.25 s, the resident memory (MB) of each process whose command line names ``word``."""

    def __init__(self, word: str) -> None:
        self.word, self.samples = word, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for p in psutil.process_iter(["pid", "cmdline", "memory_info"]):
                if self.word in " ".join(p.info["cmdline"] or ()) and p.info["memory_info"] is not None:
                    self.samples.setdefault(p.info["pid"], []).append(p.info["memory_info"].rss / 2**20)
            time.sleep(0.25)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> list[tuple[float, float]]:
        """Per worker: (peak MB over the second tenth of its samples, peak MB over the last tenth)."""
        out = []
        for values in self.samples.values():
            if len(values) >= 20:
                k = len(values) // 10
                out.append((max(values[k : 2 * k]), max(values[-k:])))
        return out


def run(data: Path, out: Path, engine: str, workers: int = 1) -> float:
    req = DatasetRequest(model="efficientnet_lite0", data=str(data), out=out, methods=["gradcam"],
                         contrasts=["original", "weighted"], engine=engine, concurrency=workers, batch_size=BATCH)
    t0 = time.perf_counter()
    done = explain_dataset(req, report=print)
    seconds = time.perf_counter() - t0
    assert done.explained == len(list(data.rglob("*.jpg"))), done
    return seconds


class Same:
    """A stage that returns its batch."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch


def _through(ray: Any, n: int) -> float:
    ds = ray.data.from_items([{"id": str(i), "path": f"{i}.jpg"} for i in range(n)])
    t0 = time.perf_counter()
    for _ in ds.map_batches(Same, batch_size=BATCH, compute=ray.data.ActorPoolStrategy(size=1)).iter_batches(
            batch_size=None):
        pass
    return time.perf_counter() - t0


def ray_overhead(ray: Any, n: int) -> tuple[float, float]:
    """(seconds per batch of `BATCH` rows, seconds of the pool's start) of a stage that returns its batch."""
    small, large = _through(ray, max(BATCH, n // 4)), _through(ray, n)
    per_batch = (large - small) / max(1, (n - max(BATCH, n // 4)) // BATCH)
    return per_batch, small - per_batch * max(1, n // 4 // BATCH)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    import ray

    from classcontrast.scale.workers import ray_session

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_images(root / "data", args.images)
        files = sorted(data.rglob("*.jpg"))
        bundle = cc.load_model("efficientnet_lite0")
        print(f"{len(files)} images; torch threads {torch.get_num_threads()}")
        base = floor(bundle, files)
        print(f"floor (plain torch, this process): {len(files) / base:.1f} images/s")
        local = run(data, root / "local", "local")
        print(f"one process (local engine): {len(files) / local:.1f} images/s = {base / local:.2f}x the floor")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_session(None)
        for workers in (1, 2):
            with Watch("MapWorker") as watch:
                seconds = run(data, root / f"ray{workers}", "ray", workers)
            print(f"Ray, {workers} worker(s): {len(files) / seconds:.1f} images/s = {base / seconds:.2f}x the floor, "
                  f"{local / seconds:.2f}x one process")
            for first, last in watch.growth():
                print(f"  a worker's resident memory: peak {first:.0f} MB in the second tenth of the run, "
                      f"{last:.0f} MB in its last tenth ({100 * (last - first) / first:+.1f}%)")
        per_batch, start = ray_overhead(ray, max(4000, len(files)))
        print(f"Ray overhead: {1000 * per_batch:.1f} ms per batch of {BATCH} rows, {start:.1f} s to start a pool "
              "(a stage that returns its batch)")
        ray.shutdown()


if __name__ == "__main__":
    main()
