"""The cost of contrastive concepts (`cc.concepts`), in one run: against the floor (a forward and one backward of the
weighted objective to the input, plain torch), against the unconditioned map (`cc.explain` with ``lrp`` or
``gradcam``), and against CRP's way of computing the same conditional heatmaps — zennit's attributor run once per
concept with the layer's relevance masked to that channel (what zennit-crp's ``CondAttribution`` does; zennit-crp
itself does not install beside zennit 0.5).

    python benchmarks/concepts.py                    # resnet50, 224², batch 1, layer4, top 5
    python benchmarks/concepts.py --models efficientnet_lite0 --layer blocks.5 --top 8
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import classcontrast as cc
from bench import build, floor_input, paired


def crp_way(model: torch.nn.Module, x: torch.Tensor, layer: str, target: int, channels: list[int]) -> None:
    """One zennit attribution per concept, the layer's relevance masked to it (BatchNorm merged, as ours)."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat

    net = copy.deepcopy(model)
    where = dict(net.named_modules())[layer]
    contrast = cc.get_contrast("weighted")
    for c in channels:
        def mask(g: torch.Tensor, c: int = c) -> torch.Tensor:
            keep = torch.zeros_like(g)
            keep[:, c] = g[:, c]
            return keep

        with Gradient(model=net, composite=EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])) as attributor:
            hook = where.register_forward_hook(lambda m, i, o: o.register_hook(mask) and None)
            try:
                attributor(x, lambda out: contrast.grad(out.detach(), torch.full((len(out),), target)))
            finally:
                hook.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50"])
    parser.add_argument("--layer", default=None, help="default: layer4 (ResNets), blocks.5 (EfficientNet-Lite)")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    print("| model | what | time (s) | × floor | × the map | CRP's way ÷ ours |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        model, _ = build(name, args.size)
        layer = args.layer or ("layer4" if "resnet" in name else "blocks.5")
        x = torch.rand(1, 3, args.size, args.size)
        with torch.no_grad():
            t = model(x).argmax(1)
        floor = lambda: floor_input(model, x, t)  # noqa: E731
        rows: list[tuple[str, Any, Any]] = []
        for method in ("lrp", "gradcam"):
            opts = {"layer": layer} if method == "gradcam" else {}
            one_map = paired(floor, lambda m=method, o=opts: cc.explain(model, x, m, "weighted", t, **o), device,
                             args.repeats)
            ours = paired(floor, lambda m=method: cc.concepts(model, x, "weighted", t, layer=layer, method=m,
                                                              top=args.top), device, args.repeats)
            three = paired(floor, lambda m=method: cc.concepts(model, x, ["original", "max", "weighted"], t,
                                                               layer=layer, method=m, top=args.top),
                           device, args.repeats)
            rows += [(f"{method} map", one_map, None), (f"{method} concepts, top {args.top}", ours, one_map),
                     (f"{method} concepts, top {args.top}, 3 contrasts", three, one_map)]
            if method == "lrp":
                chosen = cc.concepts(model, x, "weighted", t, layer=layer, top=args.top).channels[0, 0].tolist()
                crp = paired(floor, lambda c=chosen: crp_way(model, x, layer, int(t), c), device, args.repeats)
                rows.append((f"CRP's way, {args.top} concepts", crp, one_map))
        crp_time = next(r[1][0] for r in rows if r[0].startswith("CRP"))
        for what, (seconds, ratio, _), base in rows:
            vs_map = f"{seconds / base[0]:.2f}" if base is not None else "1"
            vs_crp = f"{crp_time / seconds:.2f}×" if what == f"lrp concepts, top {args.top}" else ""
            print(f"| {name} | {what} | {seconds:.3f} | {ratio:.2f} | {vs_map} | {vs_crp} |")


if __name__ == "__main__":
    main()
