"""The command line as a user runs it: figures, arrays, tables, and exit code 2 on bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import classcontrast as cc
from classcontrast.cli.main import main
from classcontrast.cli.options import MULTI, expand_multi_options


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("img") / "espresso.jpg"
    cc.sample_image("coffee").save(path)
    return str(path)


def test_multi_value_options_are_expanded() -> None:
    argv = ["explain", "a.jpg", "--contrast", "original", "weighted", "b.jpg", "--method", "gradcam", "--top-k", "2"]
    assert expand_multi_options(argv) == [
        "explain", "a.jpg", "--contrast", "original", "--contrast", "weighted", "b.jpg",
        "--method", "gradcam", "--top-k", "2",
    ]


def test_each_command_expands_exactly_its_list_options() -> None:
    """The expansion table of every command equals the options its parser takes several times, so a
    single-value option (explain's --steps, --sigma, --baseline) is never repeated into "last wins"."""
    import typer.main

    from classcontrast.cli.main import app

    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", {name: command}).values()
        listed = {opt for sub in subcommands for p in sub.params if getattr(p, "multiple", False)
                  and not getattr(p, "is_flag", False) for opt in p.opts}
        assert set(MULTI.get(name, {})) == listed, name
    assert expand_multi_options(["explain", "a.jpg", "--steps", "16", "32"]) == ["explain", "a.jpg", "--steps",
                                                                                  "16", "32"]
    assert expand_multi_options(["evaluate", "perturbation", "--steps", "1", "2"]) == [
        "evaluate", "perturbation", "--steps", "1", "--steps", "2"]


def test_explain_writes_figure_and_maps(photo: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out, npz = tmp_path / "why.png", tmp_path / "why.npz"
    code = run(["explain", photo, "--top-k", "2", "--contrast", "original", "weighted", "--foil", "cup",
                "--method", "gradcam", "xgradcam", "--out", str(out), "--save-maps", str(npz)])
    assert code == 0
    text = capsys.readouterr().out
    assert "espresso" in text and str(out) in text
    with Image.open(out) as im:
        assert im.size[0] > 500 and im.size[1] > 300
    data = np.load(npz)
    assert data["targets"].shape == (1, 2)
    assert data["maps/gradcam/weighted"].shape == (1, 2, 224, 224)
    assert "maps/xgradcam/foil:cup" in data.files  # keyed by the foil's class
    assert all(k.isascii() and k.isprintable() for k in data.files)
    assert data["probabilities"].shape == (1, 1000)
    assert abs(float(data["probabilities"].sum()) - 1) < 1e-4


def test_explain_named_targets_and_random_torchvision_model(photo: str, tmp_path) -> None:
    out = tmp_path / "r.png"
    assert run(["explain", photo, "--model", "torchvision:resnet18", "--weights", "none", "--target", "3", "7",
                "--method", "linear_approx", "--contrast", "max", "--out", str(out)]) == 0
    assert out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jpg"], "no such file"),
        (["{text}"], "is not an image"),
        (["{photo}", "--method", "nope"], "unknown method"),
        (["{photo}", "--contrast", "nope"], "unknown contrast"),
        (["{photo}", "--layer", "nope"], "unknown layer"),
        (["{photo}", "--target", "5000"], "out of range"),
        (["{photo}", "--foil", "not a class"], "unknown class"),
        (["{photo}", "--model", "nope"], "unknown model"),
        (["{photo}", "--device", "cuda:7"], "device"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str, photo: str, tmp_path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    argv = ["explain", *(a.format(photo=photo, text=text) for a in args), "--out", str(tmp_path / "o.png")]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_console_script_exit_code(tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    proc = subprocess.run([sys.executable, "-m", "classcontrast.cli.main", "explain", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bad.png" in proc.stderr and "Traceback" not in proc.stderr


def test_transformer_from_the_command_line(photo: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import timm
    import torch

    weights = tmp_path / "deit.pth"
    torch.save(timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict(), weights)
    out = tmp_path / "vit.png"
    base = ["explain", photo, "--model", "timm:deit_tiny_patch16_224", "--weights", str(weights)]
    assert run([*base, "--method", "attention_rollout", "vit_gradcam", "--out", str(out)]) == 0
    assert out.exists()
    assert run([*base, "--method", "vit_gradcam", "--layer", "40", "--out", str(out)]) == 2
    assert "block index 40 is out of range" in capsys.readouterr().err


COMMANDS = [["explain"], ["evaluate", "perturbation"], ["evaluate", "masking"], ["evaluate", "figures"],
            ["evaluate", "norm-logit"], ["reproduce"], ["train"]]


def test_help_imports_no_torch() -> None:
    """Every --help answers without importing torch (the start-up cost is measured in benchmarks/)."""
    script = (
        "import sys\nfrom classcontrast.cli.main import main\n"
        f"for cmd in {[[*c, '--help'] for c in [[], *COMMANDS]]!r}:\n"
        "    try:\n        main(cmd)\n    except SystemExit as e:\n        assert not e.code, (cmd, e.code)\n"
        "heavy = ('torch', 'torchvision', 'timm', 'numpy', 'matplotlib', 'PIL')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "--contrast" in proc.stdout and "perturbation" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_unknown_option_is_one_line_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*command, "--no-such-option", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No such option: --no-such-option") and len(err.splitlines()) == 1


def test_explain_takes_values_space_or_comma_separated(photo: str, tmp_path) -> None:
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(["explain", photo, "--contrast", "original", "weighted", "--method", "gradcam", "gradient",
                "--out", str(tmp_path / "a.png"), "--save-maps", str(a)]) == 0
    assert run(["explain", photo, "--contrasts", "original,weighted", "--methods", "gradcam,gradient",
                "--out", str(tmp_path / "b.png"), "--save-maps", str(b)]) == 0
    da, db = np.load(a), np.load(b)
    assert sorted(da.files) == sorted(db.files) and "maps/gradient/weighted" in da.files
    for k in da.files:
        np.testing.assert_array_equal(da[k], db[k])


def test_foil_equal_to_the_target_is_a_one_line_warning(photo: str, tmp_path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.png"
    assert run(["explain", photo, "--foil", "espresso", "--contrast", "weighted", "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: foil 967 (espresso) is also the target") and len(err.splitlines()) == 1
    assert out.exists()


@pytest.mark.parametrize("argv", [[], ["evaluate"]], ids=["classcontrast", "evaluate"])
def test_a_bare_command_prints_its_help_once(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv) == 0
    assert capsys.readouterr().out.count("Usage:") == 1


def test_version_and_listed_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"classcontrast {cc.__version__}"
    assert run(["explain", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for name in ("integrated_gradients", "attention_rollout", "weighted", "probability"):
        assert name in help_text.replace("│", "").replace(" ", "") or name in help_text
    assert "auto (CUDA when available)" in help_text.replace("│ ", "")
    assert "<bool>" not in help_text and "--no-relu" in help_text  # flags take no value
