"""The figures of docs/concepts-atlas.md: the embedded model's concepts for "tiger cat rather than Egyptian cat" on
the bundled cat photo (LRP and GradCAM, at ``blocks.5``), and the digits atlas' page for "3 rather than 8" (the
small CNN the tests train, seed 0; whole 8 × 8 digits as crops), captured in headless Chromium.

    python docs/scripts/concepts_figures.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.digits import train_digits  # noqa: E402
from tools.browser import Browser  # noqa: E402

import classcontrast as cc  # noqa: E402
from classcontrast.crp.atlas import AtlasRequest, build_atlas  # noqa: E402
from classcontrast.crp.page import write_atlas_page  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    bundle = cc.load_model()
    x = bundle.transform(cc.sample_image("chelsea"))[None]
    question = [cc.Foil("Egyptian cat")]
    for method in ("lrp", "gradcam"):
        found = cc.concepts(bundle, x, question, "tiger cat", layer="blocks.5", method=method, top=4)
        path = args.out / f"concepts_{method}.png"
        cc.plot_concepts(bundle.normalize.inverse(x), found, bundle.categories, titles=["chelsea"], path=path)
        print(f"wrote {path}")
    digits, source = train_digits(seed=0)
    with tempfile.TemporaryDirectory() as d:
        atlas = build_atlas(digits, source, AtlasRequest(3, cc.Foil(8), "features.5", "lrp", 3, 8, 1.0, 64),
                            Path(d), report=lambda line: None)
        page = write_atlas_page(atlas)
        with Browser(width=1100, height=820) as b:
            b.open(page.as_uri(), ready="document.readyState === 'complete'")
            (args.out / "concepts_atlas_digits.png").write_bytes(b.screenshot())
    print(f"wrote {args.out / 'concepts_atlas_digits.png'}")


if __name__ == "__main__":
    main()
