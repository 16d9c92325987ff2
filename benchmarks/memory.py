"""Peak memory per image: every method on 1 and on 16 photos (the embedded model, 224², weighted contrast), and
``classcontrast explain`` on an 8800² 16-bit PNG.

    python benchmarks/memory.py                       # every method
    python benchmarks/memory.py --methods integrated_gradients smoothgrad

Each measurement runs in a fresh process (peak resident memory is a per-process high-water mark): the process
loads the model and the photos, notes its resident memory, explains, and reports its peak. Printed per method:
the peak above that baseline for 1 photo and for 16 (in one call), per image, and the ratio 16 : 1 of the two
peaks. Targets (issue 27): Integrated Gradients' folder peak at most 1.3× one image's, under 4 GB for 224²
inputs at the default steps; the 16-bit PNG's whole ``explain`` under 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp", "linear_approx", "gradcam",
           "xgradcam", "fullgrad"]

CHILD = r"""
import json, resource, sys, torch
import classcontrast as cc
method, n = sys.argv[1], int(sys.argv[2])
bundle = cc.load_model()
names = ["chelsea", "coffee", "rocket", "astronaut"]
x = torch.stack([bundle.transform(cc.sample_image(names[i % 4])) for i in range(n)])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cc.explain(bundle, x, method, "weighted")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024}))
"""


def measure(method: str, n: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, method, str(n)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def png16() -> float:
    """Peak resident memory (MB) of the whole ``classcontrast explain`` of an 8800² 16-bit PNG."""
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        a = np.zeros((8800, 8800), np.uint16)
        a[::7] = 40000
        a[:, ::5] += 1000
        Image.fromarray(a).save(Path(d) / "big16.png")
        script = ("import resource, sys; from classcontrast.cli.main import main\n"
                  "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
                  "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        proc = subprocess.run([sys.executable, "-c", script, "explain", str(Path(d) / "big16.png"), "--out",
                               str(Path(d) / "why.png")], capture_output=True, text=True, check=True)
        return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--images", type=int, default=16)
    args = parser.parse_args()
    print(f"{'method':22} {'1 photo (MB)':>13} {f'{args.images} photos (MB)':>15} {'per image':>10} {'ratio':>6}")
    for method in args.methods:
        one, many = measure(method, 1), measure(method, args.images)
        d1, dn = one["peak_mb"] - one["base_mb"], many["peak_mb"] - many["base_mb"]
        print(f"{method:22} {d1:13.0f} {dn:15.0f} {dn / args.images:10.0f} {dn / max(d1, 1):6.2f}")
    print(f"explain of an 8800² 16-bit PNG: peak {png16():.0f} MB for the whole command (target < 1500 MB)")


if __name__ == "__main__":
    main()
