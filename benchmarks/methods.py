"""The methods users know (GradCAM++, LayerCAM, HiResCAM, EigenCAM, EigenGradCAM, guided backprop / GradCAM,
deconvolution, DeepLIFT, DeepLiftSHAP, GradientSHAP, ScoreCAM, AblationCAM, occlusion, feature ablation, KernelSHAP,
LIME, RISE): time against the floor and the peers, in one run.

Floors (plain torch, the method's own work and nothing else):
  gradient CAMs:     a forward keeping the layer's output and one backward of the weighted objective to it;
  input methods:     a forward and one backward to the input (guided, deconvolution; DeepLIFT runs twice the rows,
                     the SHAP methods their samples or baselines: their floor ratios count that work);
  gradient-free:     the method's perturbed inputs (same count, same batches) through the model, no_grad.
Peers: pytorch-grad-cam for the CAMs (a callable target returning the contrast's score), Captum for occlusion,
feature ablation, KernelSHAP and the guided methods (``cc.ContrastModel``: the contrast as an output column).
"12 maps" is the figure workload: top-3 classes × original, mean, max, weighted; the peers need 12 calls for it.

    python benchmarks/methods.py                                   # resnet50, 224², batch 1, every method
    python benchmarks/methods.py --models resnet18 efficientnet_lite0 --size 160 --methods occlusion scorecam
    python benchmarks/methods.py --device cuda

Targets (issue): gradient-free methods: 12 maps ≤ 1.2× one map (the same forwards); gradient CAMs at the floor.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
import classcontrast as cc
from bench import _time, floor_input, floor_layer, paired

FOUR = ["original", "mean", "max", "weighted"]
TARGET = {"original": cc.targets.Original, "mean": cc.targets.Mean, "max": cc.targets.Max,
          "weighted": cc.targets.Weighted}
GRAD_CAMS = {"gradcam_plus_plus": "GradCAMPlusPlus", "layercam": "LayerCAM", "hirescam": "HiResCAM",
             "gradcam": "GradCAM", "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM"}
SCORE_CAMS = {"scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}
CAPTUM = {"occlusion": "Occlusion", "feature_ablation": "FeatureAblation", "kernel_shap": "KernelShap",
          "guided_backprop": "GuidedBackprop", "guided_gradcam": "GuidedGradCam", "deconvolution": "Deconvolution",
          "deeplift": "DeepLift", "deeplift_shap": "DeepLiftShap", "gradient_shap": "GradientShap", "lime": "Lime"}
INPUT = ("guided_backprop", "guided_gradcam", "deconvolution", "deeplift", "deeplift_shap", "gradient_shap")
ALL = [*GRAD_CAMS, *INPUT, *SCORE_CAMS, "occlusion", "feature_ablation", "kernel_shap", "lime", "rise"]
SHAP_BASELINES = 4  # the baseline distribution of the SHAP methods (GradientSHAP: 4 samples from it)


def load(name: str, device: torch.device) -> tuple[torch.nn.Module, str, str]:
    """A model (random weights, or the embedded one), its last spatial layer and the score-based CAMs' layer (a
    narrower one: they run one forward per channel)."""
    if name == "efficientnet_lite0":
        return cc.load_model(name).model.to(device), "bn2", "blocks.2"
    torch.manual_seed(0)
    return torchvision.models.get_model(name).eval().to(device), "layer4", "layer1"


def shap_baselines(x: torch.Tensor) -> torch.Tensor:
    """The SHAP methods' baseline distribution: zeros and three blurred, shifted copies of the first image."""
    blur = torch.nn.functional.avg_pool2d(x[:1], 9, stride=1, padding=4)[0]
    return torch.stack([torch.zeros_like(x[0]), blur, blur.roll(8, -1), blur.roll(8, -2)])


def perturbed_forwards(model: torch.nn.Module, x: torch.Tensor, count: int, batch: int) -> Callable[[], None]:
    """The floor of a gradient-free method: ``count`` perturbed copies of each image through the model, ``batch``
    rows a forward, no gradient (the copies made on the device)."""
    def run() -> None:
        with torch.no_grad():
            rows = x.shape[0] * count
            for first in range(0, rows, batch):
                n = min(batch, rows - first)
                model(x[torch.arange(first, first + n, device=x.device) // count] * 0.5)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=ALL)
    ap.add_argument("--score-layer", default=None, help="the layer of ScoreCAM / AblationCAM (default: layer1 of a "
                    "ResNet, blocks.2 of the embedded model: one forward per channel)")
    ap.add_argument("--samples", type=int, default=64, help="KernelSHAP coalitions and RISE masks")
    ap.add_argument("--time-twelve-peer-calls", action="store_true", help="time the peers' 12 calls (default: 12 × "
                    "one call, which they are: one target and one contrast per call)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, {args.size}², "
          f"batch {args.batch}")
    rows = []
    for name in args.models:
        model, layer, narrow = load(name, device)
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
        with torch.no_grad():
            y = model(x)
        t, top = y.argmax(1), y.topk(3, 1).indices
        for method in args.methods:
            rows.append(measure(model, name, layer, args.score_layer or narrow, x, t, top, method, args, device))
    print("\n| model | method | one map × floor | one map × peer | 12 maps × one map | 12 peer calls ÷ ours |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        peer = f"{r['peer_ratio']:.2f} ({r['peer']})" if r["peer"] else "—"
        faster = f"{r['peer12_over_ours']:.1f}×" if r["peer"] else "—"
        print(f"| {r['model']} | {r['method']} | {r['floor_ratio']:.2f} | {peer} | {r['twelve_ratio']:.2f} "
              f"| {faster} |")


def measure(model: torch.nn.Module, name: str, layer: str, score_layer: str, x: torch.Tensor, t: torch.Tensor,
            top: torch.Tensor, method: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One row: the ratios of ``method`` on ``model``."""
    module = dict(model.named_modules())[layer]
    side = args.size
    cell = torch.arange(side, device=x.device) * 7 // side
    grid = cell[:, None] * 7 + cell[None]  # 49 square segments (SLIC finds no superpixels in the noise images)
    opts: dict[str, Any] = {
        "occlusion": {"window": side // 4, "stride": side // 8},
        "feature_ablation": {"segments": grid},
        "kernel_shap": {"segments": grid, "samples": args.samples},
        "lime": {"segments": grid, "samples": args.samples},
        "rise": {"samples": args.samples},
        "scorecam": {"layer": score_layer}, "ablationcam": {"layer": score_layer},
        "deeplift_shap": {"baselines": shap_baselines(x)}, "gradient_shap": {"baselines": shap_baselines(x),
                                                                              "samples": SHAP_BASELINES},
    }.get(method, {"layer": layer} if method in GRAD_CAMS or method == "guided_gradcam" else {})
    peer_one, peer_twelve, peer = peers(model, x, t, top, method, module, dict(model.named_modules())[score_layer],
                                        opts)
    if peer_one is not None:
        try:
            peer_one()
        except RuntimeError as e:  # Captum's DeepLift refuses a ReLU module used twice (every torchvision ResNet)
            print(f"{name} {method}: {peer} cannot run it ({str(e).splitlines()[0][:90]}...)", flush=True)
            peer_one, peer_twelve, peer = None, None, None
    if method in GRAD_CAMS:
        floor: Callable[[], None] = lambda: floor_layer(model, x, t, module)  # noqa: E731
    elif method in INPUT:
        floor = lambda: floor_input(model, x, t)  # noqa: E731
    else:
        if method in SCORE_CAMS:  # one forward per channel of the layer
            store: list[torch.Tensor] = []
            h = dict(model.named_modules())[score_layer].register_forward_hook(lambda m, i, o: store.append(o))
            with torch.no_grad():
                model(x)
            h.remove()
            count = store[0].shape[1]
        elif method == "occlusion":  # window positions per side, squared
            count = (-(-(side - opts["window"]) // opts["stride"]) + 1) ** 2
        else:
            count = opts.get("samples", 49)
        floor = perturbed_forwards(model, x, count, 16)

    def ours_one() -> None:
        cc.explain(model, x, method, "weighted", t, **opts)

    def ours_twelve() -> None:
        cc.explain(model, x, method, FOUR, cc.TopK(3), **opts)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_s, floor_ratio, _ = paired(floor, ours_one, device, args.repeats)
        ours_s, peer_ratio = (paired(peer_one, ours_one, device, args.repeats)[:2] if peer_one
                              else (float("nan"), float("nan")))
        twelve_s, twelve_ratio, _ = paired(ours_one, ours_twelve, device, args.repeats)
        if peer_twelve is None:
            peer12 = float("nan")
        elif args.time_twelve_peer_calls:
            peer12 = _time(peer_twelve, device) / twelve_s
        else:  # the peers' 12 calls are 12 independent one-target calls: 12 × one call (its median above)
            peer12 = 12 * ours_s / peer_ratio / twelve_s
    print(f"{name} {method:18s} one map {one_s:6.2f} s = ×{floor_ratio:.2f} floor, ×{peer_ratio:.2f} {peer or '-'}; "
          f"12 maps ×{twelve_ratio:.2f} one map, {peer12:.1f}× faster than 12 peer calls", flush=True)
    return {"model": name, "method": method, "floor_ratio": floor_ratio, "peer_ratio": peer_ratio,
            "twelve_ratio": twelve_ratio, "peer12_over_ours": peer12, "peer": peer}


def peers(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, top: torch.Tensor, method: str,
          module: torch.nn.Module, score_module: torch.nn.Module, opts: dict[str, Any]
          ) -> tuple[Callable[[], Any] | None, Callable[[], Any] | None, str | None]:
    """(one peer call, the 12 peer calls of the figure workload, the peer's name) — None where no peer has it."""
    if method in GRAD_CAMS or method in SCORE_CAMS:
        import pytorch_grad_cam as pgc

        cls = getattr(pgc, {**GRAD_CAMS, **SCORE_CAMS}[method])
        layer = score_module if method in SCORE_CAMS else module

        def call(targets: list[Any]) -> None:
            with cls(model=model, target_layers=[layer]) as cam:
                if hasattr(cam, "batch_size"):
                    cam.batch_size = 16
                cam(input_tensor=x, targets=targets)

        def one() -> None:
            call([cc.targets.Weighted(int(c)) for c in t])

        def twelve() -> None:
            for c in FOUR:
                for k in range(3):
                    call([TARGET[c](int(v)) for v in top[:, k]])

        return one, twelve, "pytorch-grad-cam"
    if method in CAPTUM:
        import captum.attr as ca

        def attribute(contrast: str, target: torch.Tensor) -> None:
            wrapped = cc.ContrastModel(model, contrast)
            if method == "occlusion":
                ca.Occlusion(wrapped).attribute(x, sliding_window_shapes=(3, opts["window"], opts["window"]),
                                                strides=opts["stride"], target=target, perturbations_per_eval=16)
            elif method == "lime":
                from captum._utils.models.linear_model import SkLearnLinearRegression

                mask = opts["segments"].expand(x.shape[0], 1, *opts["segments"].shape)
                ca.Lime(wrapped, interpretable_model=SkLearnLinearRegression()).attribute(
                    x, target=target, feature_mask=mask, n_samples=opts["samples"], perturbations_per_eval=16)
            elif method in ("feature_ablation", "kernel_shap"):
                mask = opts["segments"].expand(x.shape[0], 1, *opts["segments"].shape)
                if method == "feature_ablation":
                    ca.FeatureAblation(wrapped).attribute(x, target=target, feature_mask=mask,
                                                          perturbations_per_eval=16)
                else:
                    ca.KernelShap(wrapped).attribute(x, target=target, feature_mask=mask, n_samples=opts["samples"],
                                                     perturbations_per_eval=16)
            elif method == "guided_backprop":
                ca.GuidedBackprop(wrapped).attribute(x.clone().requires_grad_(True), target=target)
            elif method == "deconvolution":
                ca.Deconvolution(wrapped).attribute(x.clone().requires_grad_(True), target=target)
            elif method == "deeplift":
                ca.DeepLift(wrapped).attribute(x.clone().requires_grad_(True), torch.zeros_like(x), target=target)
            elif method == "deeplift_shap":
                ca.DeepLiftShap(wrapped).attribute(x.clone().requires_grad_(True), opts["baselines"], target=target)
            elif method == "gradient_shap":
                ca.GradientShap(wrapped).attribute(x, opts["baselines"], n_samples=SHAP_BASELINES, target=target)
            else:
                ca.GuidedGradCam(wrapped, module).attribute(x.clone().requires_grad_(True), target=target)

        return (lambda: attribute("weighted", t),
                lambda: [attribute(c, top[:, k]) for c in FOUR for k in range(3)], "Captum")
    return None, None, None


if __name__ == "__main__":
    main()
