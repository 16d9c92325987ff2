"""The figure of the "Segmentation and detection" page: a segmenter trained on digit scenes (the tests'
scenes of scikit-learn's handwritten digits), one held-out scene, the region of one digit explained with
original, weighted and "rather than" the digit it is most confusable with.

    python docs/scripts/scene_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tests.scenes import make_scenes, train_segmenter  # noqa: E402

import classcontrast as cc  # noqa: E402


def main() -> None:
    bundle = train_segmenter(0)
    scenes = make_scenes(8, seed=3000, split="test")
    x = bundle.normalize(scenes.images[:2])
    with torch.no_grad():
        y = bundle.model(x)["out"]
    digit = sorted(scenes.boxes[0])[0]
    t = digit + 1
    mask = scenes.segmentation[:2] == t
    mean = (y[0] * mask[0]).flatten(1).sum(1) / mask[0].sum()
    mean[t] = mean[0] = -torch.inf
    s = int(mean.argmax())
    ex = cc.explain(bundle, x[:1], "gradcam", ["original", "weighted", cc.Foil(s)],
                    cc.Region(t, mask[:1]))
    out = ROOT / "docs" / "images" / "digit-scene-region.png"
    cc.plot_explanations(scenes.images[:1].expand(-1, 3, -1, -1), dict(ex), bundle.categories, path=out)
    print(f"wrote {out}: region of digit {digit}, rather than {s - 1}")


if __name__ == "__main__":
    main()
