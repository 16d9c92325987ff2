"""The digits faithfulness table of the README: 4 training seeds of the small CNN the tests train on
scikit-learn's real digits, 120 held-out digits each, deletion / insertion areas of p_t.

    python docs/scripts/digits_faithfulness.py [--seeds 4] [--limit 120]
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
