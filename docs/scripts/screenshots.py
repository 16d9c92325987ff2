"""Screenshots of the explorer for the README and the documentation, from the bundled photos.

    python docs/scripts/screenshots.py [--out docs/images]

Runs ``classcontrast audit`` on the bundled photos (offline), opens ``audit.html`` in headless
Chromium and captures the overview, a pair's gallery and one image's explorer.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.browser import Browser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "classcontrast", "audit", "--out", d, "--pairs", "6", "--examples", "3",
                        "--method", "gradcam", "gradient"], check=True, capture_output=True)
        with Browser(width=1240, height=820) as b:
            b.open((Path(d) / "audit.html").as_uri())
            (args.out / "audit_overview.png").write_bytes(b.screenshot())
            b.click('tr.cc-row[data-pair="0"]')
            b.settled()
            (args.out / "audit_pair.png").write_bytes(b.screenshot())
            b.click('.cc-card[data-entry="p0m0"]')
            b.settled()
            (args.out / "explorer.png").write_bytes(b.screenshot())
    for name in ("audit_overview.png", "audit_pair.png", "explorer.png"):
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
