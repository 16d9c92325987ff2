"""The digits faithfulness table of the README: 4 training seeds of the small CNN the tests train on
scikit-learn's real digits, 120 held-out digits each, deletion / insertion areas of p_t.

    python docs/scripts/digits_faithfulness.py [--seeds 4] [--limit 120]

With ``--methods``, the table of every method × contrast instead (deletion / insertion areas of p_t and of the
contrast's own objective, zeros baseline), so users can pick a method by evidence:

    python docs/scripts/digits_faithfulness.py --seeds 2 --limit 60 --methods all
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.digits import train_digits  # noqa: E402

from classcontrast.evaluation.faithfulness import run_faithfulness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--methods", nargs="+", help="'all' or method names: the method x contrast table")
    args = parser.parse_args()
    if args.methods:
        return by_method(args)
    table: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        bundle, source = train_digits(seed=seed)
        result = run_faithfulness(bundle, source.select(limit=args.limit, seed=0),
                                  ["gradcam", "gradient_x_input", "linear_approx"], ["original", "weighted"],
                                  ["zeros", "blur", "road"], ["probability"], batch_size=64, layer="features.3")
        for r in result["records"]:
            table.setdefault((r["method"], r["contrast"], r["baseline"]), []).append(
                (r["auc_deletion"], r["auc_insertion"]))
        print(f"seed {seed} done", flush=True)
    print("| map | zeros del / ins | blur del / ins | ROAD del / ins |\n|---|---|---|---|")
    for method in ("gradient_x_input", "gradcam", "linear_approx", "random"):
        for contrast in ("original", "weighted"):
            cells = []
            for base in ("zeros", "blur", "road"):
                v = table[(method, contrast, base)]
                d, i = [x[0] for x in v], [x[1] for x in v]
                cells.append(f"{min(d):.3f}–{max(d):.3f} / {min(i):.3f}–{max(i):.3f}")
            print(f"| {method}, {contrast} | " + " | ".join(cells) + " |")


def by_method(args: argparse.Namespace) -> None:
    """Deletion / insertion areas (zeros baseline) of p_t and of the contrast's objective, per method x contrast,
    as ranges over the seeds."""
    from classcontrast.methods import METHODS

    skip = {"vit_gradcam", "attention_rollout"}  # the digit CNN has no transformer blocks
    methods = [m for m in METHODS if m not in skip] if args.methods == ["all"] else args.methods
    contrasts = ["original", "max", "weighted"]
    options = {"occlusion": {"window": 2, "stride": 1}, "feature_ablation": {"segments": 16},
               "kernel_shap": {"segments": 16, "samples": 128}, "rise": {"samples": 256, "cells": 4}}
    table: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        bundle, source = train_digits(seed=seed)
        for method in methods:
            result = run_faithfulness(bundle, source.select(limit=args.limit, seed=0), [method], contrasts,
                                      ["zeros"], ["probability", "contrast"], batch_size=64, layer="features.3",
                                      method_options=options.get(method))
            for r in result["records"]:
                table.setdefault((r["method"], r["contrast"], r["score"]), []).append(
                    (r["auc_deletion"], r["auc_insertion"]))
        print(f"seed {seed} done", flush=True)
    print("| method | contrast | p_t deletion ↓ / insertion ↑ | objective deletion ↓ / insertion ↑ |")
    print("|---|---|---|---|")
    for method in [*methods, "random"]:
        for contrast in contrasts:
            cells = []
            for score in ("probability", "contrast"):
                v = table.get((method, contrast, score))
                if not v:
                    cells.append("—")
                    continue
                d, i = [x[0] for x in v], [x[1] for x in v]
                cells.append(f"{min(d):.3f}–{max(d):.3f} / {min(i):.3f}–{max(i):.3f}")
            print(f"| {method} | {contrast} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
