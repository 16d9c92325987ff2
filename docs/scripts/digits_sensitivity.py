"""The class-sensitivity table of docs/experiments.md on scikit-learn's real digits: the small CNN the tests train
(``--seeds`` training seeds), ``--limit`` held-out digits each, every gradient method of the library with
``original``, ``max`` and ``weighted`` — how much each map changes when the class asked changes (CASE:
1 − mean Spearman ρ between the top-1's map and the other top classes', k = 5), as ranges over the seeds.

    python docs/scripts/digits_sensitivity.py [--seeds 2] [--limit 120]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.digits import train_digits  # noqa: E402

from classcontrast.evaluation.sensitivity import run_class_sensitivity  # noqa: E402

METHODS = ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "gradient_shap", "lrp",
           "guided_backprop", "deconvolution", "linear_approx", "gradcam", "xgradcam", "gradcam_plus_plus",
           "layercam", "eigengradcam", "eigencam"]
CONTRASTS = ["original", "max", "weighted"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=120)
    args = parser.parse_args()
    table: dict[tuple[str, str], list[float]] = {}
    for seed in range(args.seeds):
        bundle, source = train_digits(seed=seed)
        rows = run_class_sensitivity(bundle, source.select(limit=args.limit, seed=0), METHODS, CONTRASTS, k=5,
                                     batch_size=64, method_options={"layer": "features.3", "steps": 16,
                                                                    "samples": 16})
        for r in rows:
            table.setdefault((r["method"], r["contrast"]), []).append(r["sensitivity"])
        print(f"seed {seed} done", flush=True)
    print("| method | " + " | ".join(CONTRASTS) + " |\n|---|" + "---|" * len(CONTRASTS))
    for m in METHODS:
        cells = [f"{min(v):.2f}–{max(v):.2f}" for v in (table[(m, c)] for c in CONTRASTS)]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
