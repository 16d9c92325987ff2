"""The documentation's gallery: every method × contrast on the same bundled photos, with the embedded model.

    python docs/scripts/gallery.py [--out docs/gallery]

Writes ``method_<name>.png`` (the contrasts as columns) and ``contrast_<name>.png`` (the methods as
columns) for the cat photo's two most probable classes (tiger cat, Egyptian cat) and the coffee photo.
The Vision Transformer methods need a Vision Transformer, and none ships offline: they are not drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import classcontrast as cc

ROOT = Path(__file__).resolve().parents[2]
CNN_METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp", "linear_approx",
               "gradcam", "xgradcam", "fullgrad"]
CONTRASTS = ["original", "mean", "max", "weighted", "probability"]
PHOTOS = ["chelsea", "coffee"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = cc.load_model()
    x = torch.stack([bundle.transform(cc.sample_image(p)) for p in PHOTOS])
    pixels = bundle.normalize.inverse(x)
    top = cc.explain(bundle, x, "gradient").logits.topk(2, 1).indices
    foil = cc.Foil(top[:, 1])  # each image's runner-up: "why the top class rather than the second"
    results: dict[str, cc.Explanations] = {}
    for method in CNN_METHODS:
        opts = {"steps": 16} if method == "integrated_gradients" else {"samples": 16} if method == "smoothgrad" else {}
        results[method] = cc.explain(bundle, x, method, [*CONTRASTS, foil], top[:, :1], **opts)
    written = []
    for method, res in results.items():
        cols = {("why t rather than the runner-up" if k == "foil" else k): e for k, e in res.items()}
        written.append(args.out / f"method_{method}.png")
        cc.plot_explanations(pixels, cols, bundle.categories, titles=PHOTOS, path=written[-1], cell=2.0)
    for contrast in [*CONTRASTS, "foil"]:
        written.append(args.out / f"contrast_{contrast}.png")
        cc.plot_explanations(pixels, {m: results[m][contrast] for m in CNN_METHODS}, bundle.categories,
                             titles=PHOTOS, path=written[-1], cell=1.8)
    print(f"wrote {len(written)} figures to {args.out}")


if __name__ == "__main__":
    main()
