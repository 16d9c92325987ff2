"""Review round three, the command line and its messages: detectors' options that work, progress that speaks, one
line for every mistake and the messages a newcomer needs (issue 38: items 9, 17's prompts and thin images, 18, 20,
22, 23)."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import classcontrast as cc
from tests.test_cli import run

if importlib.util.find_spec("ultralytics") is None:  # not importorskip: its import would change the process
    pytest.skip("Ultralytics is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A YOLOv8n state dict whose random weights are spread so that it detects at the default threshold, and a
    photo no other test uses."""
    from classcontrast.units.yolo import import_ultralytics
    from tests.test_yolo import _spread

    (tasks,) = import_ultralytics("ultralytics.nn.tasks")
    folder = tmp_path_factory.mktemp("detector")
    model = _spread(tasks.DetectionModel("yolov8n.yaml", nc=3, verbose=False), 5).float()
    torch.save(model.state_dict(), folder / "state.pt")
    cc.sample_image("rocket").resize((150, 110)).save(folder / "launch.png")
    return folder / "state.pt", folder / "launch.png"


def test_min_score_alone_chooses_the_detections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--min-score without --detections (today's main ignored it, and the error for no detection told the user to
    lower it): a random YOLO detects nothing at 0.25, everything at 0."""
    photo = tmp_path / "p.png"
    cc.sample_image("coffee").resize((96, 64)).save(photo)
    base = ["explain", str(photo), "--model", "yolo:yolov8n.yaml", "--weights", "none", "--num-classes", "3",
            "--method", "gradient", "--top-k", "2", "--out", str(tmp_path / "w.png"), "--save-maps",
            str(tmp_path / "m.npz")]
    capsys.readouterr()
    assert run(base) == 2
    assert "lower the threshold" in capsys.readouterr().err
    assert run([*base, "--min-score", "0"]) == 0
    import numpy as np

    assert np.load(tmp_path / "m.npz")["boxes"].shape == (1, 2, 4)


def test_a_detectors_page_without_detections(detector: tuple[Path, Path], tmp_path: Path) -> None:
    """--html for a detector without --detections (today's main: ValueError: too many values to unpack): the page
    shows the objects the figure explained."""
    from tests.test_review_cli import page_data

    state, photo = detector
    assert run(["explain", str(photo), "--model", "yolo:yolov8n.yaml", "--num-classes", "3", "--weights", str(state),
                "--method", "gradient", "--top-k", "2", "--out", str(tmp_path / "w.png"), "--html",
                str(tmp_path / "w.html"), "--save-maps", str(tmp_path / "m.npz")]) == 0
    import numpy as np

    entries = page_data(tmp_path / "w.html")["entries"]
    saved = np.load(tmp_path / "m.npz")
    assert [e["unit"]["kind"] for e in entries] == ["object", "object"]
    assert [e["unit"]["score"] for e in entries] == pytest.approx(saved["scores"][0].tolist(), abs=1e-6)


def test_a_thin_image_through_yolo(tmp_path: Path) -> None:
    """A 5000 × 2 image: letterboxed with one pixel row (today's main: an interpolation to height 0, a traceback)."""
    from PIL import Image

    Image.new("RGB", (5000, 2), (120, 30, 200)).save(tmp_path / "thin.png")
    assert run(["explain", str(tmp_path / "thin.png"), "--model", "yolo:yolov8n.yaml", "--weights", "none",
                "--min-score", "0", "--detections", "1", "--method", "gradient", "--out", str(tmp_path / "w.png")]) == 0


def test_no_sigmoid_warning_for_a_default_the_user_did_not_ask_for(detector: tuple[Path, Path], tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Under a sigmoid head the default contrasts are original and max (weighted would be original again: today's
    main warned about it without the user asking for weighted); asked for, the warning stays."""
    import numpy as np

    state, photo = detector
    base = ["explain", str(photo), "--model", "yolo:yolov8n.yaml", "--num-classes", "3", "--weights", str(state),
            "--method", "gradient", "--top-k", "1", "--out", str(tmp_path / "w.png"), "--save-maps",
            str(tmp_path / "m.npz")]
    capsys.readouterr()
    assert run(base) == 0
    assert "weighted" not in capsys.readouterr().err
    assert sorted(k for k in np.load(tmp_path / "m.npz").files if k.startswith("maps/")) == \
        ["maps/gradient/max", "maps/gradient/original"]
    assert run([*base, "--contrast", "original", "weighted"]) == 0
    assert "with a sigmoid head 'weighted' is y_t" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_long_run_shows_its_progress_per_method_and_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """At a terminal, once a run passes its threshold: each method's batches and the current call's passes (today's
    main printed nothing for minutes); at no terminal, or with --quiet, nothing."""
    from rich.console import Console

    from classcontrast.cli import common

    screen = _Terminal()
    monkeypatch.setattr(common, "err_console", Console(file=screen, force_terminal=True, width=120))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    x = torch.rand(2, 3, 4, 4)
    with common.RunProgress(["integrated_gradients", "gradient"], 2, after=0.0) as progress:
        for _ in range(2):
            with progress.method("integrated_gradients"):
                cc.explain(net, x, "integrated_gradients", "weighted", steps=8, internal_batch_size=4)
            with progress.method("gradient"):
                cc.explain(net, x, "gradient", "weighted")
    shown = screen.getvalue()
    assert "integrated_gradients (pass 4)" in shown and "2/2" in shown and "gradient (pass 1)" in shown
    for quiet, after in ((True, 0.0), (False, 60.0)):
        screen.truncate(0)
        with common.RunProgress(["gradient"], 1, quiet=quiet, after=after) as progress, progress.method("gradient"):
            cc.explain(net, x, "gradient", "weighted")
        assert screen.getvalue() == ""


def test_finished_phases_show_their_elapsed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's bars read 0:00:00 when done (the time remaining); a finished phase now shows the time it took."""
    from rich.console import Console

    from classcontrast.cli import common

    screen = _Terminal()
    monkeypatch.setattr(common, "err_console", Console(file=screen, force_terminal=True, width=120))
    with common._bars(False) as bar:
        task = bar.add_task("explain pairs", total=2)
        bar.tasks[0].start_time -= 75  # it began 75 s ago
        bar.update(task, advance=2)
    assert "0:01:15" in screen.getvalue()


def test_explain_quiet_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "p.png"
    cc.sample_image("coffee").resize((40, 30)).save(photo)
    capsys.readouterr()
    assert run(["explain", str(photo), "--model", "torchvision:resnet18", "--weights", "none", "--quiet",
                "--out", str(tmp_path / "w.png")]) == 0
    assert capsys.readouterr().out == "" and (tmp_path / "w.png").exists()
    assert run(["explain", str(photo), "--model", "torchvision:resnet18", "--weights", "none", "--out",
                str(tmp_path / "w2.png")]) == 0
    assert "Top classes" in capsys.readouterr().out  # the next command line is not quiet


@pytest.mark.parametrize(("argv", "said"), [
    (["explain", "x.png", "--method", "gradcan"], "unknown method 'gradcan'; did you mean 'gradcam'"),
    (["explain", "x.png", "--contrast", "weigted"], "unknown contrast 'weigted'; did you mean 'weighted'"),
    (["audit", ".", "--method", "integrated_gradient"], "did you mean 'integrated_gradients'"),
    (["evaluate", "faithfulness", "--data", ".", "--contrast", "mx"], "unknown contrast 'mx'"),
])
def test_misspellings_are_reported_before_torch_loads(argv: list[str], said: str) -> None:
    """A misspelled method or contrast took ~8 s to be reported on a loaded machine (after torch loaded)."""
    code = ("import sys\nfrom classcontrast.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    print('torch' in sys.modules, e.code)\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "2"] and said in done.stderr, (done.stdout, done.stderr)


def test_names_the_user_got_wrong_are_helped() -> None:
    """torchvision:resnet5O got no suggestion; a yaml's numbered classes (a name like 'cat' fails) now say there are
    no names; a model with few classes lists them."""
    with pytest.raises(cc.ClassContrastError, match="did you mean 'resnet50'"):
        cc.load_model("torchvision:resnet5O", weights=None)
    with pytest.raises(cc.ClassContrastError, match=r"80 classes have no names, only numbers '0' … '79'"):
        cc.classes.class_index("cat", [str(i) for i in range(80)], "--foil")
    with pytest.raises(cc.ClassContrastError, match="the model's classes: 'road', 'car', 'sky'"):
        cc.classes.class_index("tree", ["road", "car", "sky"], "--foil")


def test_markdown_tables_stay_whole_when_piped(tmp_path: Path) -> None:
    """`evaluate ... > file` wrapped its markdown table rows at 80 columns (rich's width away from a terminal)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        cc.sample_image(name).resize((64, 48)).save(folder / f"{name}.png")
    done = subprocess.run([sys.executable, "-m", "classcontrast", "evaluate", "faithfulness", "--data", str(folder),
                           "--method", "gradient", "--fractions", "0.5", "1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert rows and all(line.rstrip().endswith("|") for line in rows)
    assert max(len(line) for line in rows) > 80


def test_identical_masking_rows_say_why() -> None:
    from classcontrast.evaluation.masking import COINCIDE, coinciding_note

    rows = [{"method": m, "target": "t1", "baseline": "blur", "mode": "positive", "r_original": 0.5,
             "r_weighted": 0.6} for m in ("linear_approx", "gradcam", "xgradcam")]
    assert coinciding_note(rows) == COINCIDE and "features.40" in COINCIDE
    rows[1]["r_weighted"] = 0.61
    assert coinciding_note(rows) is None


def test_empty_prompts_and_twice_the_image_token_are_one_line() -> None:
    """cc.prompt_tokens with an empty prompt returned a (1, D, 0) input; a prompt holding the image token twice was
    the processor's own ValueError."""
    from tests.vlm import llava

    model, processor = llava(dtype=torch.float32)
    with pytest.raises(cc.ClassContrastError, match="the prompt is empty"):
        cc.answers(model, processor, "  ", ["yes", "no"])
    with pytest.raises(cc.ClassContrastError, match="holds the image token '<image>' 2 times"):
        cc.answers(model, processor, "two <image> pictures <image>?", ["yes", "no"])
    from classcontrast.models.prompt import _made

    with pytest.raises(cc.ClassContrastError, match="no words to explain"):
        _made(model, torch.tensor([1]), torch.tensor([False]), None, 0, torch.zeros(1, 4), None)


def test_the_table_says_what_a_regions_probability_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A segmented volume's per-region numbers are means over the region's voxels (they may sum past 1)."""
    nibabel = pytest.importorskip("nibabel")
    import numpy as np

    nibabel.save(nibabel.Nifti1Image(np.random.default_rng(3).normal(size=(32, 32, 32)).astype(np.float32),
                                     np.eye(4)), tmp_path / "knee.nii.gz")
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run(["explain", str(tmp_path / "knee.nii.gz"), "--model", "monai:unet", "--weights", "none",
                    "--method", "gradient", "--top-k", "2", "--out", str(tmp_path / "w.png")]) == 0
    assert "mean p over the region's voxels" in capsys.readouterr().out
