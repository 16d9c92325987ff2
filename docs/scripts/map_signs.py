"""Do the signed maps agree with the decision they explain? Over the bundled photos (6 photos × 6 views),
for every method (and, for the CAM methods, several layers) of the embedded model: the fraction of maps
whose sum has the opposite sign of their contrast's score ("contradicting" maps: a positive "why t rather
than the others" drawn mostly blue), and the mean share of the map's mass that speaks against the target
(negative mass / total |mass|) for maps with a positive score.

    python docs/scripts/map_signs.py [--out docs/map-signs.md] [--quick]

Targets: each image's top-2 classes; contrasts: ``weighted``, ``max`` (against the strongest other class)
and ``Foil`` = the other of the two (so the top-1's foil score is positive, the top-2's negative).
The table it writes is included in the documentation (methods overview).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import classcontrast as cc
from classcontrast.data.sources import bundled_source
from classcontrast.text import SIGN_NOTE

ROOT = Path(__file__).resolve().parents[2]
PAGE = """# What a map's sign means

A signed map is red where the image supports the target over what the contrast compares it with, and
blue where it speaks against it. It is tempting to read the whole map as a verdict: "mostly red, so the
model is for t". That reading holds only for methods whose map **sums to the score** it explains
(completeness), and a figure that shows a winning class drawn mostly blue confuses everyone. This page
measures how often it happens, per method and layer, on the embedded model.

<!-- written by docs/scripts/map_signs.py; run it again after changing a method or the default layer -->

**Measured** over {n} images ({source}), each image's top-2 classes, with the contrasts `weighted`,
`max` and a foil (the other of the two classes): the share of maps whose sum has the opposite sign of
their contrast's score; among maps of a positive score (the model does favour t), how many sum below 0,
and the average share of their mass that is blue.

{table}

**How to read it.**

* **CAM methods right before global pooling** (`bn2` on the embedded model, the default layer since
  this measurement): a map of a positive score never sums below 0. There the gradient is the same at
  every position and the map sums to $\\sum_c g_c\\,(y_c - b_c)$ with $g = \\partial O/\\partial y$: the
  contrast of the logits without the head's bias. The remaining disagreements are maps of a *negative*
  score (e.g. `weighted` for a class with $p_t < 1/2$) whose linearised sum is positive: for `weighted`,
  $y_t - \\sum_s \\alpha_s y_s$ exceeds $\\operatorname{{logit}}(p_t)$ by the entropy of $\\alpha$.
* **CAM methods at inner layers** (`conv_head`, before BatchNorm; `blocks.*`) have no completeness: a
  winning class is drawn mostly blue in a sixth to two thirds of the maps. Read their colours as *where*
  the evidence lies, not as a verdict.
* **Gradients and SmoothGrad** are sensitivities, not attributions: their sums are as likely to agree as
  a coin. **Integrated Gradients** sums to $O(x) - O(x')$, the score's change from the *baseline* image:
  a disagreement means the baseline scores higher for t than the image does (try `baseline="blur"`).
* Figures mark every map whose sum disagrees with its score with one short line under it ("note: map
  sums < 0, score +0.85"), and the explorer says in full: "Note: {note}." At the default layer
  that sum is the linearised, bias-free contrast above; at inner layers and for gradients it has no such
  meaning. `Explanation.disagreeing()` returns the same flags, and `Explanation.scores` the scores.
"""
CAM_LAYERS = ["blocks.5", "blocks.6", "conv_head", "bn2"]
CAM_METHODS = ["gradcam", "xgradcam", "linear_approx"]
INPUT_METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "lrp", "fullgrad"]
CONTRASTS = ["weighted", "max"]


def measure(bundle: cc.ModelBundle, x: torch.Tensor, method: str, layer: str | None
            ) -> tuple[int, int, int, int, float]:
    """(contradicting maps, maps, positive-score maps summing below 0, positive-score maps, mean
    against-share of positive-score maps) for one method and layer."""
    opts = {"layer": layer} if layer else {}
    contradicting, total, against = 0, 0, []
    positive, positive_against = 0, 0
    for i in range(len(x)):
        xi = x[i : i + 1]
        with torch.no_grad():
            top2 = bundle.model(xi).topk(2, 1).indices[0]
        for j in range(2):
            t, s = int(top2[j]), int(top2[1 - j])
            ex = cc.explain(bundle, xi, method, [*CONTRASTS, cc.Foil(s)], [[t]], **opts)
            for name, contrast in zip(ex, [*CONTRASTS, cc.Foil(s)], strict=True):
                y = ex[name].logits
                score = float(cc.get_contrast(contrast).score(y, torch.tensor([t])))
                m = cc.explanation.displayed(ex[name].maps)[0, 0].double()
                total += 1
                contradicting += int(score * float(m.sum()) < 0)
                if score > 0:
                    positive += 1
                    positive_against += int(float(m.sum()) < 0)
                    mass = float(m.abs().sum())
                    against.append(float(-m.clamp(max=0).sum()) / mass if mass > 0 else 0.0)
    return contradicting, total, positive_against, positive, sum(against) / max(len(against), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "map-signs.md")
    parser.add_argument("--quick", action="store_true", help="2 images only (a smoke run)")
    args = parser.parse_args()
    bundle = cc.load_model("efficientnet_lite0")
    source = bundled_source()
    samples = source.samples[:2] if args.quick else source.samples
    x = torch.stack([bundle.transform(s.load()) for s in samples])
    rows = []
    for method in CAM_METHODS + INPUT_METHODS:
        for layer in CAM_LAYERS if method in CAM_METHODS else [None]:
            start = time.perf_counter()
            bad, n, pos_bad, pos, against = measure(bundle, x, method, layer)
            rows.append((method, layer or "input", bad, n, pos_bad, pos, against))
            print(f"{method:22s} {layer or 'input':10s} contradicting {bad:3d}/{n} ({bad / n:6.1%})  "
                  f"positive but summing < 0 {pos_bad}/{pos}  against-share {against:6.1%}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    lines = [
        "| method | layer | sum's sign ≠ score's sign | score > 0, sum < 0 | share of the map against t (score > 0) |",
        "|---|---|---|---|---|",
        *(f"| `{m}` | `{layer}`{' (default)' if layer == bundle.layer else ''} | {bad}/{n} = {bad / n:.0%} | "
          f"{pb}/{p} = {pb / max(p, 1):.0%} | {against:.0%} |" for m, layer, bad, n, pb, p, against in rows),
    ]
    text = PAGE.format(n=len(x), source=source.description, table="\n".join(lines), note=SIGN_NOTE)
    if not args.quick:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
