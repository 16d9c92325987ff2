"""Clips and volumes against the forward+backward floor: a 16-frame ``r3d_18`` clip (112², random weights) and a
96³ MONAI UNet region, four contrasts each, and the same region under a sliding window of 64³.

    python benchmarks/volumes.py                 # 3 repeats
    python benchmarks/volumes.py --repeats 5

The floor is plain torch: one forward pass and ``torch.autograd.grad`` of the weighted objective (a region's:
summed over its voxels) to the tensor the method reads (the CAM layer, or the input). A region's four contrasts
are four different per-voxel cotangent fields (no shared low-rank basis, unlike a classifier's rows), so its rows
are also given against the floor of its four objectives (the forward and one gradient per objective).
Printed: the median time of 4 contrasts (original, mean, max, weighted) in one call, its ratio to the floor
(goal ≤ 1.1× for CAMs), and the peak resident-memory growth (also / the floor's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import classcontrast as cc
from bench import floor, paired

CONTRASTS = ["original", "mean", "max", "weighted"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    rows = []

    import torchvision

    torch.manual_seed(0)
    r3d = torchvision.models.video.r3d_18(weights=None).eval()
    clip = torch.randn(1, 3, 16, 112, 112)
    t = torch.tensor([0])
    weighted = cc.get_contrast("weighted")
    for method, layer in (("gradcam", r3d.layer4), ("gradient", None)):
        time, ratio, memory = paired(lambda layer=layer: floor(r3d, clip, lambda y: weighted.score(y, t).sum(), layer),
                                     lambda method=method: cc.explain(r3d, clip, method, CONTRASTS, t), device,
                                     args.repeats)
        rows.append(("r3d_18, 16×112² clip", method, time, ratio, memory))

    import monai

    torch.manual_seed(0)
    unet = monai.networks.nets.UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 32, 64, 128, 256),
                                    strides=(2, 2, 2, 2), num_res_units=2).eval()
    volume = torch.randn(1, 1, 96, 96, 96)
    with torch.no_grad():
        y = unet(volume)
    cls = int(y.argmax(1).flatten().bincount(minlength=3).argmax())
    mask = y.argmax(1)[0] == cls

    def region(out: torch.Tensor) -> torch.Tensor:
        pixels = out[0].movedim(0, -1)[mask]
        return weighted.score(pixels, torch.full((len(pixels),), cls)).sum()

    four = [cc.get_contrast(c) for c in CONTRASTS]

    def regions(out: torch.Tensor) -> list[torch.Tensor]:  # the four contrasts' objectives: four gradients
        pixels = out[0].movedim(0, -1)[mask]
        target = torch.full((len(pixels),), cls)
        return [c.score(pixels, target).sum() for c in four]

    layer_name = cc.explain(unet, volume[..., :32, :32, :32], "gradcam", "weighted", cc.Region.all(1)).layer
    layer = dict(unet.named_modules())[layer_name]
    for method, lay in (("gradcam", layer), ("gradient", None)):
        time, ratio, memory = paired(lambda lay=lay: floor(unet, volume, region, lay),
                                     lambda method=method: cc.explain(unet, volume, method, CONTRASTS, cc.Region(cls)),
                                     device, args.repeats)
        rows.append((f"UNet, 96³ region ({layer_name})" if lay is not None else "UNet, 96³ region", method, time,
                     ratio, memory))
        _, ratio4, _ = paired(lambda lay=lay: floor(unet, volume, regions, lay),
                              lambda method=method: cc.explain(unet, volume, method, CONTRASTS, cc.Region(cls)),
                              device, args.repeats)
        rows.append(("  the same / its 4 objectives' floor", method, time, ratio4, float("nan")))
    windowed = cc.SlidingWindow(unet, roi_size=64, sw_batch_size=1, overlap=0.25)
    time, ratio, memory = paired(lambda: floor(unet, volume, region, None),
                                 lambda: cc.explain(windowed, volume, "gradient", CONTRASTS, cc.Region(cls)), device,
                                 args.repeats)
    rows.append(("UNet, 96³ region, 64³ windows", "gradient", time, ratio, memory))
    print(f"{'workload':38} {'method':10} {'4 contrasts (s)':>16} {'/ floor':>8} {'memory / floor':>15}")
    for workload, method, time, ratio, memory in rows:
        shown = f"{memory:15.2f}" if memory < 100 else f"{'(floor ~0)':>15}" if memory == memory else ""
        print(f"{workload:38} {method:10} {time:16.2f} {ratio:8.2f} {shown}")


if __name__ == "__main__":
    main()
