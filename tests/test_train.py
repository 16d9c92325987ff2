"""``classcontrast train`` on a tiny CUB-layout dataset: runs, checkpoints, resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import classcontrast as cc
from classcontrast.training import Recipe, replace_head
from tests.test_cli import run
from tests.test_datasets import make_cub

ARGS = ["--model", "torchvision:resnet18", "--weights", "none", "--batch-size", "4", "--image-size", "32"]


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cub(tmp_path_factory.mktemp("cub"))


def test_recipe_defaults_are_the_study() -> None:
    r = Recipe()
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.weight_decay, r.milestones, r.gamma, r.seed) == (
        200, 128, 1e-3, 0.9, 5e-4, [200], 0.5, 0)


def test_replace_head() -> None:
    import torchvision

    m = replace_head(torchvision.models.vgg16_bn(), 200)
    assert m.classifier[6].out_features == 200 and m.classifier[6].in_features == 4096


def test_train_checkpoints_and_resumes_exactly(cub: Path, tmp_path: Path) -> None:
    data = ["--data", f"cub200:{cub}"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(["train", *data, *ARGS, "--epochs", "2", "--out", str(straight)]) == 0
    assert run(["train", *data, *ARGS, "--epochs", "1", "--out", str(split)]) == 0
    assert run(["train", *data, *ARGS, "--epochs", "2", "--out", str(split), "--resume"]) == 0
    m1 = json.loads((straight / "metrics.json").read_text())
    m2 = json.loads((split / "metrics.json").read_text())
    assert [r["epoch"] for r in m2] == [1, 2] and m1 == m2
    a = torch.load(straight / "last.pth", weights_only=True)["model"]
    b = torch.load(split / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (split / "best.pth").exists() and (split / "metrics.csv").read_text().startswith("epoch,")
    # the checkpoint explains from the command line, with its 3-class head
    img = next((cub / "CUB_200_2011" / "images").rglob("*.jpg"))
    out = tmp_path / "why.png"
    assert run(["explain", str(img), "--model", "torchvision:resnet18", "--weights", str(split / "best.pth"),
                "--num-classes", "3", "--out", str(out)]) == 0
    assert out.exists()


def test_train_errors(cub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["train", "--data", f"cub200:{cub}", *ARGS, "--out", str(tmp_path), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert run(["train", "--data", str(tmp_path / "nothing"), *ARGS, "--out", str(tmp_path)]) == 2
    assert cc.ClassContrastError


def test_milestones_take_the_one_multi_value_convention(cub: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data", f"cub200:{cub}", *ARGS, "--epochs", "1"]
    for i, given in enumerate((["5", "9"], ["5,9"], ["5", "--milestones", "9"])):
        out = tmp_path / str(i)
        assert run(["train", *data, "--milestones", *given, "--out", str(out)]) == 0
        assert torch.load(out / "last.pth", weights_only=True)["recipe"]["milestones"] == [5, 9], given
    assert run(["train", *data, "--milestones", "2.5", "--out", str(tmp_path / "bad")]) == 2
    assert "--milestones takes whole epochs" in capsys.readouterr().err
