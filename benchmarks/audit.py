"""Audit throughput (images/s) against the floor, in one run on the same model and images.

The floor is plain torch doing the audit's work and nothing else: preprocess every image, one
forward pass over all of them (no graph), then for the images the audit shows, one forward pass with
the layer recorded and one ``torch.autograd.grad`` per map (every target × contrast the explorer
offers), GradCAM from activations and gradients. classcontrast runs ``cc.audit`` on the same images,
once without writing anything and once writing everything (per-sample log, maps, JSON, CSV, HTML).

    python benchmarks/audit.py                 # the embedded model, the bundled photos × 3
    python benchmarks/audit.py --copies 6 --repeats 3

Target: throughput ≥ 0.8× the floor's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import classcontrast as cc
from classcontrast.confusion.pairs import classes_for, rank_pairs
from classcontrast.data.sources import Sample, SampleSource, bundled_source
from classcontrast.explorer.page import NAMED

TARGET = 0.8


def source(copies: int) -> SampleSource:
    """The bundled photos' views, decoded once and kept in memory (no disk in either measurement)."""
    base = [(s.id, s.load()) for s in bundled_source()]
    samples = [Sample(f"{i}/{sid}", lambda img=img: img) for i in range(copies) for sid, img in base]
    return SampleSource(samples, "the model's clean top-1 prediction", f"{len(samples)} in-memory views")


def floor(bundle: cc.ModelBundle, src: SampleSource, pairs: int, examples: int, top_k: int, batch: int,
          device: torch.device = torch.device("cpu")) -> float:
    """Seconds for the plain-torch audit work (on ``device``; results copied to the host as the audit does)."""
    _sync(device)
    start = time.perf_counter()
    model, layer = bundle.model.eval(), dict(bundle.model.named_modules())[bundle.layer]
    rows = []
    with torch.no_grad():
        for i in range(0, len(src), batch):
            chunk = src.samples[i : i + batch]
            pixels = torch.stack([bundle.preprocess(s.load()) for s in chunk]).to(device)
            p = torch.softmax(model(bundle.normalize(pixels)), 1)
            top = p.double().topk(5, 1)
            for j, s in enumerate(chunk):
                idx, val = top.indices[j].tolist(), top.values[j].tolist()
                rows.append({"id": s.id, "label": None, "predicted": idx[0], "p_predicted": val[0],
                             "runner_up": idx[1], "p_runner_up": val[1], "p_label": None,
                             "top": list(zip(idx, val, strict=True))})
    shown = []
    for p in rank_pairs(rows, examples)[:pairs]:
        shown += [(r, classes_for(r, [p.predicted, p.true], top_k + 2)) for r in [*p.mistakes, *p.correct]]
    by_id = {s.id: s for s in src}
    for param in model.parameters():
        param.requires_grad_(False)
    for i in range(0, len(shown), batch):
        chunk = shown[i : i + batch]
        x = bundle.normalize(torch.stack([bundle.preprocess(by_id[r["id"]].load()) for r, _ in chunk]).to(device))
        classes = torch.tensor([c for _, c in chunk], device=device)
        store = {}
        handle = layer.register_forward_hook(lambda m, a, o: store.setdefault("a", o.detach().requires_grad_(True)))
        try:
            with torch.enable_grad():
                y = model(x)
        finally:
            handle.remove()
        # the same objectives: every class × (5 named contrasts + a foil per class), one backward each
        a = store["a"]
        with torch.enable_grad():
            y = model.classifier(model.global_pool(model.bn2(a)).flatten(1))
        n_obj = classes.shape[1] * (len(NAMED) + classes.shape[1])
        for k in range(n_obj):
            t = classes[:, k % classes.shape[1]]
            cot = torch.nn.functional.one_hot(t, y.shape[1]).to(y.dtype) - torch.softmax(y.detach(), 1)
            (g,) = torch.autograd.grad(y, a, cot, retain_graph=k < n_obj - 1)
            torch.einsum("bk,bkhw->bhw", g.mean((-2, -1)), a.detach()).cpu()
    for param in model.parameters():
        param.requires_grad_(True)
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    bundle = cc.load_model(device=device)
    src = source(args.copies)
    kw = {"pairs": args.pairs, "examples": args.examples, "batch_size": args.batch_size, "seed": None,
          "device": device}
    cc.audit(bundle, src, None, **kw)  # warm-up
    times: dict[str, list[float]] = {"floor": [], "audit (nothing written)": [], "audit (all files)": []}
    for _ in range(args.repeats):
        times["floor"].append(floor(bundle, src, args.pairs, args.examples, 3, args.batch_size, device))
        t = time.perf_counter()
        result = cc.audit(bundle, src, None, **kw)
        _sync(device)
        times["audit (nothing written)"].append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            cc.audit(bundle, src, d, **kw)
            _sync(device)
            times["audit (all files)"].append(time.perf_counter() - t)
    n = len(src)
    base = statistics.median(times["floor"])
    print(f"device {device}: {n} images, {len(result.slots)} shown ({len(result.pairs)} pairs), "
          f"{len(NAMED) + 5} contrasts × 5 classes per shown image, GradCAM at {bundle.layer}")
    print(f"{'':26}{'seconds':>8}{'images/s':>10}{'× floor':>9}")
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = base / med
        flag = "" if name == "floor" or ratio >= TARGET else "  MISSED"
        print(f"{name:26}{med:8.2f}{n / med:10.1f}{ratio:9.2f}{flag}")


if __name__ == "__main__":
    main()
