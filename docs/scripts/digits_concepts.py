"""The trained check of docs/concepts-atlas.md on scikit-learn's digits (the small CNN the tests train): for "3 rather
than 8" at ``features.5``, how much the top three concepts' heatmaps on the held-out 3s concentrate where the mean 3
and the mean 8 differ most (their positive mass inside the top quarter of |m3 − m8| over that quarter's share: 1 is
no preference), against the channels ranked in the middle and last, the top concepts of "3" alone and the 3s' own
ink; and the share of 3s and 8s among the atlas' 24 references over all held-out digits.

    python docs/scripts/digits_concepts.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.digits_concepts import check  # noqa: E402

COLUMNS = ["rather than 8", "middle", "last", "original", "ink", "references 3 or 8", "references 3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("| seed | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    with tempfile.TemporaryDirectory() as d:
        for seed in range(args.seeds):
            got = check(seed, Path(d) / str(seed))
            print(f"| {seed} | " + " | ".join(f"{got[c]:.2f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
