"""Review round three, Ultralytics YOLO: a model yaml never runs code, a checkpoint's own image size and
Ultralytics' own image reading are used, and importing Ultralytics leaves the process as it was (issue 38: items
1, 3, 4, 16, and the YOLO parts of 17 and 22)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import classcontrast as cc
from classcontrast.units.yolo import import_ultralytics

if importlib.util.find_spec("ultralytics") is None:
    pytest.skip("Ultralytics is not installed", allow_module_level=True)
(tasks,) = import_ultralytics("ultralytics.nn.tasks")
SHIPPED = Path(tasks.__file__).parent.parent / "cfg" / "models" / "v8" / "yolov8.yaml"


def _yaml(folder: Path, name: str, old: str = "", new: str = "", extra: str = "") -> Path:
    """A copy of Ultralytics' yolov8 yaml (scale n, 3 classes) with ``old`` replaced by ``new`` and ``extra`` lines."""
    text = SHIPPED.read_text().replace("nc: 80", f"nc: 3\n{extra}")
    assert old in text
    path = folder / name
    path.write_text(text.replace(old, new) if old else text)
    return path


@pytest.mark.parametrize(("field", "old", "new", "extra"), [
    ("activation", "", "", "activation: \"__import__('pathlib').Path('{marker}').touch() or nn.SiLU()\""),
    ("layer", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, torch_load, ['{marker}']]", ""),
    ("layer", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, nn.init.zeros_, ['{marker}']]", ""),
    ("args", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, SPPF, [1024, {{a: 1}}]]", ""),
])
def test_a_yaml_runs_no_code_from_any_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, old: str,
                                            new: str, extra: str) -> None:
    """A yaml whose activation is an expression, or whose layer names a function (Ultralytics' own torch_load on a
    file beside it), is refused in one line before Ultralytics' parser evaluates it: the marker file is never made.
    (Today's main evaluated the activation and made the file.)"""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran_code"
    path = _yaml(tmp_path, f"evil_{field}n.yaml", old, new.format(marker=marker), extra.format(marker=marker))
    with pytest.raises(cc.ClassContrastError, match="refused: it could run code") as e:
        cc.load_model(f"yolo:{path}", weights=None)
    assert "\n" not in str(e.value) and not marker.exists()


def test_a_yaml_with_a_plain_activation_builds(tmp_path: Path) -> None:
    """The documented form nn.<Class>(literal arguments) builds, and its layers use it."""
    path = _yaml(tmp_path, "relu_n.yaml", extra="activation: nn.LeakyReLU(0.125)")
    bundle = cc.load_model(f"yolo:{path}", weights=None)
    acts = [m for m in bundle.model.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert acts and all(m.negative_slope == 0.125 for m in acts)
    assert tasks.Conv.default_act.__class__ is torch.nn.SiLU  # Ultralytics' process-wide default restored


def test_the_checkpoint_refusal_names_a_route_that_is_safe(tmp_path: Path) -> None:
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": None}, checkpoint)
    with pytest.raises(cc.ClassContrastError, match="pass --trust-checkpoint") as e:
        cc.load_model(f"yolo:{checkpoint}")
    assert "checked: no code runs from it" in str(e.value)
    with pytest.raises(cc.ClassContrastError, match="nothing is downloaded"):
        cc.load_model("yolo:https://example.com/yolov8n.yaml", weights=None)
