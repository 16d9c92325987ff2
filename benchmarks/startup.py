"""Command-line start-up: wall time of every ``--help`` and of explaining one photo, against targets.

    python benchmarks/startup.py                # 5 runs each, medians
    python benchmarks/startup.py --repeats 9

Targets (issue: "a CLI that answers at once"): every ``--help`` ≤ 0.5 s; ``classcontrast explain
one.jpg`` on the embedded model ≤ 3 s. For scale, the same run prints the time of ``import torch``
alone, the floor of any command that computes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET = 0.5
EXPLAIN_TARGET = 3.0
COMMANDS = [[], ["explain"], ["evaluate"], ["evaluate", "perturbation"], ["evaluate", "masking"],
            ["evaluate", "figures"], ["evaluate", "norm-logit"], ["evaluate", "faithfulness"], ["audit"],
            ["reproduce"], ["train"]]


def wall(argv: list[str], repeats: int) -> float:
    """Median wall time of running ``argv`` (one untimed warm-up run first: disk cache)."""
    subprocess.run(argv, capture_output=True, check=False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("classcontrast") or str(Path(sys.executable).with_name("classcontrast"))
    rows = []
    for cmd in COMMANDS:
        help_cmd = [exe, *cmd, "--help"]
        probe = subprocess.run(help_cmd, capture_output=True, check=False)
        if probe.returncode != 0:  # a command this version does not have
            continue
        t = wall(help_cmd, args.repeats)
        rows.append((" ".join(["classcontrast", *cmd, "--help"]), t, HELP_TARGET))
    with tempfile.TemporaryDirectory() as d:
        from PIL import Image
        from skimage import data

        photo = Path(d) / "one.jpg"
        Image.fromarray(data.coffee()).save(photo)
        t = wall([exe, "explain", str(photo), "--out", str(Path(d) / "why.png")], args.repeats)
        rows.append(("classcontrast explain one.jpg (embedded model, figure written)", t, EXPLAIN_TARGET))
    torch_alone = wall([sys.executable, "-c", "import torch"], args.repeats)
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  wall (s)  target (s)  ratio")
    for name, t, target in rows:
        flag = "" if t <= target else "  MISSED"
        print(f"{name:<{width}}  {t:8.2f}  {target:10.1f}  {t / target:5.2f}{flag}")
    floor = "(floor: python -c 'import torch')"
    print(f"{floor:<{width}}  {torch_alone:8.2f}")


if __name__ == "__main__":
    main()
