"""Review round three, Ultralytics YOLO: a model yaml never runs code, a checkpoint's own image size and
Ultralytics' own image reading are used, and importing Ultralytics leaves the process as it was (issue 38: items
1, 3, 4, 16, and the YOLO parts of 17 and 22)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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


@pytest.fixture(scope="module")
def trained_at_320(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An Ultralytics checkpoint whose training image size was 320 (random weights spread so that it detects), and a
    photo of another size than any test's."""
    from tests.test_yolo import _spread

    folder = tmp_path_factory.mktemp("yolo320")
    model = _spread(tasks.DetectionModel("yolov8n.yaml", nc=3, verbose=False), 3).float()
    model.names = {0: "cat", 1: "dog", 2: "cup"}
    checkpoint = folder / "best.pt"
    torch.save({"model": model, "train_args": {"imgsz": 320}}, checkpoint)
    photo = folder / "walk.png"
    cc.sample_image("astronaut").resize((300, 200)).save(photo)
    return checkpoint, photo


def test_a_checkpoint_is_letterboxed_at_its_own_size(trained_at_320: tuple[Path, Path], tmp_path: Path) -> None:
    """The objects explained are those YOLO(...).predict() reports: the checkpoint's imgsz (320) letterboxes the
    image, as Ultralytics' predictor does (today's main letterboxed it to 640 and found other boxes); --imgsz
    overrides it."""
    import numpy as np

    from tests.test_cli import run

    checkpoint, photo = trained_at_320
    (package,) = import_ultralytics("ultralytics")
    found = package.YOLO(str(checkpoint)).predict(str(photo), conf=0.58, verbose=False)[0].boxes
    assert 3 <= len(found) <= 40
    bundle = cc.load_model(f"yolo:{checkpoint}", trust_checkpoint=True)
    assert bundle.preprocess.shape == (320, 320)
    x = bundle.transform(bundle.read_image(photo))[None]
    ex = cc.explain(bundle, x, "gradient", "original", cc.Detections(top=len(found), threshold=0.58))
    mine = [u for u in ex.units[0] if u["selected"]]
    assert len(mine) == len(found)
    boxes = torch.tensor([bundle.preprocess.undo_box(u["box"], 200, 300) for u in mine], dtype=torch.float64)
    torch.testing.assert_close(boxes, found.xyxy.double(), atol=0.05, rtol=0)  # Ultralytics fuses Conv+BN
    scores = torch.tensor([u["score"] for u in mine], dtype=torch.float64)
    torch.testing.assert_close(scores, found.conf.double(), atol=2e-3, rtol=0)
    assert [u["label"] for u in mine] == found.cls.long().tolist()
    out = tmp_path / "m.npz"
    assert run(["explain", str(photo), "--model", f"yolo:{checkpoint}", "--trust-checkpoint", "--min-score", "0.58",
                "--detections", str(len(found)), "--method", "gradient", "--contrast", "original", "--out",
                str(tmp_path / "w.png"), "--save-maps", str(out)]) == 0
    np.testing.assert_allclose(np.load(out)["boxes"][0], found.xyxy.numpy(), atol=0.05)
    wide = cc.load_model(f"yolo:{checkpoint}", trust_checkpoint=True, imgsz=640)
    assert wide.preprocess.shape == (640, 640) and wide.transform(wide.read_image(photo)).shape[-1] == 640
    assert cc.load_model("yolo:yolov8n.yaml", weights=None, imgsz=300).preprocess.shape == (320, 320)  # stride 32
    with pytest.raises(cc.ClassContrastError, match="imgsz is an option of yolo"):
        cc.load_model("efficientnet_lite0", imgsz=320)


def test_images_are_read_as_ultralytics_reads_them(trained_at_320: tuple[Path, Path], tmp_path: Path) -> None:
    """A transparent PNG (RGBA, and a palette with a transparent colour) reaches a YOLO model as Ultralytics' imread
    gives it — the stored colours, alpha dropped — while the other models composite alpha on white (documented).
    (Today's main composited on white for YOLO too.)"""
    import numpy as np
    from PIL import Image

    (patches,) = import_ultralytics("ultralytics.utils.patches")
    rgba = np.zeros((37, 53, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 180, np.arange(53)[None] * 4, 40
    rgba[..., 3] = np.arange(37)[:, None] * 7
    Image.fromarray(rgba, "RGBA").save(tmp_path / "glass.png")
    palette = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "pal.png", transparency=0)
    bundle = cc.load_model(f"yolo:{trained_at_320[0]}", trust_checkpoint=True)
    for name in ("glass.png", "pal.png"):
        theirs = patches.imread(str(tmp_path / name))[..., ::-1]
        assert np.array_equal(np.asarray(bundle.read_image(tmp_path / name)), theirs)
    white = np.asarray(cc.load_image(tmp_path / "glass.png")).astype(int)
    alpha = rgba[..., 3:] / 255
    assert np.abs(white - (rgba[..., :3] * alpha + 255 * (1 - alpha))).max() <= 1
    assert np.array_equal(np.asarray(cc.load_model("efficientnet_lite0").read_image(tmp_path / "glass.png")), white)


FAKE = '''
import logging, os, threading, warnings
os.environ["CC_FAKE_IMPORT"] = "set by the import"
os.environ["CC_CHANGED"] = "changed by the import"
warnings.filterwarnings("ignore", message="the import's filter")
logging.getLogger("cc.fake.library").setLevel(logging.CRITICAL)

def other():  # another thread, meanwhile
    os.environ["CC_OTHER_THREAD"] = "kept"
    warnings.filterwarnings("ignore", message="the other thread's filter")
    logging.getLogger("cc.fake.third").setLevel(logging.ERROR)

t = threading.Thread(target=other)
t.start()
t.join()
'''


def test_the_import_undoes_only_what_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the importing thread changes is undone; what another thread set meanwhile stays (today's main restored
    os.environ and warnings.filters wholesale, wiping the other thread's)."""
    import logging
    import sys
    import warnings

    (tmp_path / "cc_fake_ultra.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CC_CHANGED", "the user's")
    monkeypatch.delenv("CC_OTHER_THREAD", raising=False)
    level = logging.getLogger("cc.fake.library").level
    try:
        import_ultralytics("cc_fake_ultra")
        assert "CC_FAKE_IMPORT" not in os.environ and os.environ["CC_CHANGED"] == "the user's"
        assert os.environ["CC_OTHER_THREAD"] == "kept"
        messages = [f[1].pattern if f[1] is not None else None for f in warnings.filters]
        assert "the other thread's filter" in messages and "the import's filter" not in messages
        assert logging.getLogger("cc.fake.library").level == level
        assert logging.getLogger("cc.fake.third").level == logging.ERROR
    finally:
        os.environ.pop("CC_OTHER_THREAD", None)
        warnings.filters[:] = [f for f in warnings.filters if f[1] is None or "other thread" not in f[1].pattern]
        sys.modules.pop("cc_fake_ultra", None)


def test_importing_ultralytics_writes_nothing_home_and_prints_nothing(tmp_path: Path) -> None:
    """A fresh process with an empty home: no settings file under it, no banner on stdout, OpenCV's threads, other
    loggers' levels and print options as they were (today's main left cv2.setNumThreads(0), the settings file and
    its banner)."""
    code = ("import logging, os, cv2, torch, numpy as np\n"
            "before = (cv2.getNumThreads(), logging.getLogger('sentry_sdk').level, "
            "logging.getLogger('coremltools').level, str(vars(torch._tensor_str.PRINT_OPTS)), np.get_printoptions())\n"
            "from classcontrast.units.yolo import import_ultralytics\n"
            "import_ultralytics('ultralytics', 'ultralytics.nn.tasks')\n"
            "after = (cv2.getNumThreads(), logging.getLogger('sentry_sdk').level, "
            "logging.getLogger('coremltools').level, str(vars(torch._tensor_str.PRINT_OPTS)), np.get_printoptions())\n"
            "assert before == after, (before, after)\n"
            "assert 'YOLO_CONFIG_DIR' not in os.environ\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_CONFIG_DIR", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Settings" not in done.stdout and done.stdout.strip() == ""
    assert not any(home.rglob("*")), list(home.rglob("*"))
