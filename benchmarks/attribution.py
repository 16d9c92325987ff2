"""Integrated Gradients, SmoothGrad and LRP: time against the floor and the peers, in one run.

Floors (plain torch, the method's own work and nothing else):
  IG, n steps:     the n path points of every image in one forward pass, one backward pass of the
                   weighted objective to them, the weighted sum times (x - x');
  SmoothGrad:      the n noisy copies in one forward pass, one backward pass, the mean;
  LRP:             zennit's own ``Gradient`` attributor with the same composite and canonizer.
Peers: Captum's IntegratedGradients and NoiseTunnel(Saliency) on ``cc.ContrastModel`` (the contrast as
an output column), and zennit for LRP. "12 maps" is the figure workload: top-3 classes × original,
mean, max, weighted; the peers need 12 calls for it.

    python benchmarks/attribution.py                          # resnet50, batch 1, 16 steps / samples
    python benchmarks/attribution.py --models resnet18 resnet50 --batches 1 4 --steps 32 --repeats 3
    python benchmarks/attribution.py --device cuda               # the same table on a GPU

Targets (issue): one map ≤ 1.10× the floor and ≤ 1.0× Captum (zennit for LRP); 12 maps ≤ 1.5× one map.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
import classcontrast as cc
from bench import _time, paired

FOUR = ["original", "mean", "max", "weighted"]


def frozen(model: torch.nn.Module, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with the model's parameters frozen (as classcontrast runs it: no parameter graph)."""
    def run() -> Any:
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                return fn()
        finally:
            for p in model.parameters():
                p.requires_grad_(True)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--methods", nargs="+", default=["integrated_gradients", "smoothgrad", "lrp"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    rows = measure(args.models, args.batches, args.steps, args.repeats, args.size, args.methods,
                   torch.device(args.device))
    print("\n| model | batch | method | one map × floor | one map × peer | 12 maps × one map | 12 peer calls ÷ ours |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['method']} | {r['one_map_x_floor']:.2f} | "
              f"{r['one_map_x_peer']:.2f} ({r['peer']}) | {r['twelve_maps_x_one_map']:.2f} | "
              f"{r['peer_twelve_over_ours']:.1f}× |")


def measure(models: list[str], batches: list[int], steps: int, repeats: int, size: int, methods: list[str],
            device: torch.device) -> list[dict[str, object]]:
    """One row per model × batch × method: the ratios printed by ``main``."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
          f"n = {steps} steps / samples")
    rows: list[dict[str, object]] = []
    for name in models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name).eval().to(device)
        canonizer = ResNetCanonizer if name.startswith("resnet") else VGGCanonizer
        for batch in batches:
            x = torch.randn(batch, 3, size, size, device=device)
            with torch.no_grad():
                y = model(x)
            t = y.argmax(1)
            n = steps

            def floor_ig() -> None:
                from classcontrast.methods.integrated import quadrature

                a, w = quadrature("gausslegendre", n)
                a, w = a.to(device), w.to(device)
                pts = (a.float().view(1, n, 1, 1, 1) * x[:, None]).flatten(0, 1).requires_grad_(True)
                out = model(pts)
                (g,) = torch.autograd.grad(cc.Weighted().score(out, t.repeat_interleave(n)).sum(), pts)
                (g.view(batch, n, *x.shape[1:]) * w.float().view(1, n, 1, 1, 1)).sum(1) * x

            def floor_sg() -> None:
                eps = 0.15 * torch.randn(batch, n, *x.shape[1:], device=device)
                noisy = (x[:, None] + eps).flatten(0, 1).requires_grad_(True)
                (g,) = torch.autograd.grad(cc.Weighted().score(model(noisy), t.repeat_interleave(n)).sum(), noisy)
                g.view(batch, n, *x.shape[1:]).mean(1)

            def zennit_one(cot: torch.Tensor) -> None:
                with Gradient(model=model, composite=EpsilonPlusFlat(canonizers=[canonizer()])) as attributor:
                    attributor(x, cot)

            cot_w = cc.Weighted().grad(y, t)
            top = y.topk(3, 1).indices
            cases = {
                "integrated_gradients": (
                    frozen(model, floor_ig),
                    lambda: IntegratedGradients(cc.ContrastModel(model, "weighted")).attribute(x, target=t, n_steps=n),
                    lambda: [IntegratedGradients(cc.ContrastModel(model, c)).attribute(x, target=top[:, k], n_steps=n)
                             for c in FOUR for k in range(3)],
                    {"steps": n}, "Captum"),
                "smoothgrad": (
                    frozen(model, floor_sg),
                    lambda: NoiseTunnel(Saliency(cc.ContrastModel(model, "weighted"))).attribute(
                        x, nt_type="smoothgrad", nt_samples=n, stdevs=0.15, target=t, abs=False),
                    lambda: [NoiseTunnel(Saliency(cc.ContrastModel(model, c))).attribute(
                        x, nt_type="smoothgrad", nt_samples=n, stdevs=0.15, target=top[:, k], abs=False)
                        for c in FOUR for k in range(3)],
                    {"samples": n}, "Captum"),
                "lrp": (
                    lambda: zennit_one(cot_w), lambda: zennit_one(cot_w),
                    lambda: [zennit_one(cc.get_contrast(c).grad(y, top[:, k])) for c in FOUR for k in range(3)],
                    {}, "zennit"),
            }
            for method in methods:
                floor, peer_one, peer_twelve, opts, peer = cases[method]
                def ours_one(method: str = method, opts: dict = opts) -> None:
                    cc.explain(model, x, method, "weighted", t, **opts)

                def ours_twelve(method: str = method, opts: dict = opts) -> None:
                    cc.explain(model, x, method, FOUR, cc.TopK(3), **opts)

                # every ratio from alternating pairs (drifts of a shared machine hit both sides alike)
                one_s, one_ratio, mem = paired(floor, ours_one, device, repeats)
                _, peer_ratio, _ = paired(peer_one, ours_one, device, repeats)
                twelve_s, twelve_ratio, _ = paired(ours_one, ours_twelve, device, repeats)
                peer12_s = _time(peer_twelve, device)
                rows.append({"model": name, "batch": batch, "method": method, "one_map_x_floor": one_ratio,
                             "one_map_x_peer": peer_ratio, "twelve_maps_x_one_map": twelve_ratio,
                             "peer_twelve_over_ours": peer12_s / twelve_s, "memory_x_floor": mem, "peer": peer})
                print(f"{name} b={batch} {method:22s} one map {one_s:6.2f} s = ×{one_ratio:.2f} floor, "
                      f"×{peer_ratio:.2f} {peer}; 12 maps {twelve_s:6.2f} s = ×{twelve_ratio:.2f} one map, "
                      f"{peer12_s / twelve_s:.1f}× faster than 12 {peer} calls; memory ×{mem:.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
