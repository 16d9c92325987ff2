"""The documentation's gallery: every method × contrast on the same bundled photos, with the embedded model.

    python docs/scripts/gallery.py [--out docs/gallery]

Writes ``method_<name>.png`` (the contrasts as columns) and ``contrast_<name>.png`` (the methods as
columns) for the cat and coffee photos, each photo's most probable class. No pretrained Vision Transformer
ships offline, so the two Vision Transformer methods are drawn on a small ViT (torchvision's
VisionTransformer: 32×32 input, 8×8 patches, 4 blocks) trained here on scikit-learn's real handwritten
digits in about ten seconds (≈96% held-out accuracy): ``method_vit_gradcam.png``,
``method_attention_rollout.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

import classcontrast as cc

ROOT = Path(__file__).resolve().parents[2]
CNN_METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp", "linear_approx",
               "gradcam", "xgradcam", "fullgrad"]
CONTRASTS = ["original", "mean", "max", "weighted", "probability"]
PHOTOS = ["chelsea", "coffee"]
VIT_METHODS = ["vit_gradcam", "attention_rollout"]
DIGITS = [3, 8, 9]


def digits_vit(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Train the small ViT on 1,400 digits (upsampled to 32×32, grey as RGB); return it, the
    held-out images in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))
    pixels = torch.from_numpy(d.images / 16.0).float()[:, None]
    pixels = nn.functional.interpolate(pixels, size=32, mode="bilinear", align_corners=False).clamp(0, 1)
    pixels = pixels.repeat(1, 3, 1, 1)
    x, y = (pixels - 0.5) / 0.5, torch.from_numpy(d.target).long()
    train, test = torch.from_numpy(order[:1400]), torch.from_numpy(order[1400:])
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=4, num_heads=4,
                                                 hidden_dim=64, mlp_dim=128, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(15):  # 15 epochs: 0.957 held out (25 at lr 2e-3 took twice as long for the same)
        model.train()
        perm = train[torch.randperm(len(train))]
        for i in range(0, len(perm), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[perm[i:i + 64]]), y[perm[i:i + 64]]).backward()  # training
            opt.step()
    model.eval()
    return model, pixels[test], y[test]


def draw_vit(out: Path) -> list[Path]:
    """The Vision Transformer methods on one held-out 3, 8 and 9, the contrasts as columns."""
    model, pixels, labels = digits_vit()
    with torch.no_grad():
        accuracy = float((model((pixels - 0.5) / 0.5).argmax(1) == labels).float().mean())
    print(f"digits ViT: held-out accuracy {accuracy:.3f}")
    pick = [int(torch.nonzero(labels == c)[0]) for c in DIGITS]
    x = (pixels[pick] - 0.5) / 0.5
    written = []
    for method in VIT_METHODS:
        res = cc.explain(model, x, method, CONTRASTS, cc.TopK(1))
        written.append(out / f"method_{method}.png")
        cc.plot_explanations(pixels[pick], dict(res.items()), [str(i) for i in range(10)],
                             titles=[f"digit {c}" for c in DIGITS], path=written[-1], cell=2.0)
    return written


def readme_figure(path: Path) -> Path:
    """The README's figure: why tiger cat, for GradCAM and Integrated Gradients, as the class alone, against
    every other class, and rather than Egyptian cat."""
    bundle = cc.load_model()
    x = bundle.transform(cc.sample_image("chelsea"))[None]
    columns = {}
    for method, label in (("gradcam", "GradCAM"), ("integrated_gradients", "Integrated Gradients")):
        ex = cc.explain(bundle, x, method, ["original", "weighted", cc.Foil("Egyptian cat")], targets="tiger cat")
        columns.update({f"{label} · {key}": e for key, e in ex.items()})
    cc.plot_explanations(bundle.normalize.inverse(x), columns, bundle.categories, path=path, cell=2.6)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gallery")
    parser.add_argument("--readme", action="store_true", help="write only the README's figure, docs/images/why.png")
    args = parser.parse_args()
    if args.readme:
        print(f"wrote {readme_figure(ROOT / 'docs' / 'images' / 'why.png')}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = cc.load_model()
    x = torch.stack([bundle.transform(cc.sample_image(p)) for p in PHOTOS])
    pixels = bundle.normalize.inverse(x)
    with torch.no_grad():
        top = bundle.model(x).topk(2, 1).indices
    foil = cc.Foil(top[:, 1])  # each image's runner-up: "why the top class rather than the second"
    results: dict[str, cc.Explanations] = {}
    for method in CNN_METHODS:
        # 8 path points / noisy copies: the figures look the same as with more (rebuilt on every docs build)
        opts = {"steps": 8} if method == "integrated_gradients" else {"samples": 8} if method == "smoothgrad" else {}
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
    written += draw_vit(args.out)
    print(f"wrote {len(written)} figures to {args.out}")


if __name__ == "__main__":
    main()
