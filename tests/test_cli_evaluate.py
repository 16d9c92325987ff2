"""``classcontrast evaluate ...`` offline, on the bundled photos and on a labelled folder."""

from __future__ import annotations

import json

import pytest

import classcontrast as cc
from tests.test_cli import run


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Class folders named by the model's class names."""
    root = tmp_path_factory.mktemp("labelled")
    for cls, photo in [("espresso", "coffee"), ("tiger cat", "chelsea"), ("missile", "rocket")]:
        (root / cls).mkdir()
        img = cc.sample_image(photo)
        img.save(root / cls / f"{photo}.jpg")
        img.crop((0, 0, img.width * 3 // 4, img.height * 3 // 4)).save(root / cls / f"{photo}_crop.png")
    return str(root)


def test_perturbation_defaults_offline(tmp_path) -> None:
    out = tmp_path / "p"
    assert run(["evaluate", "perturbation", "--out", str(out), "--limit", "2", "--steps", "1",
                "--epsilons", "0.003", "--contrasts", "weighted,original"]) == 0
    records = json.loads((out / "perturbation.json").read_text())
    assert [r["contrast"] for r in records] == ["weighted", "original"]
    assert set(records[0]) == {"contrast", "epsilon", "steps", "n", "clean_accuracy", "clean_logit",
                               "clean_probability", "delta_accuracy", "delta_logit", "delta_probability"}
    assert records[0]["n"] == 2
    assert (out / "perturbation.csv").exists() and (out / "perturbation_eps0.003.png").exists()


def test_perturbation_on_a_labelled_folder(labelled: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p"
    assert run(["evaluate", "perturbation", "--data", labelled, "--out", str(out), "--steps", "1",
                "--epsilons", "0.001", "--contrasts", "weighted"]) == 0
    assert "labels from folder names" in capsys.readouterr().out.replace("\n", " ")
    rows = [json.loads(x) for x in (out / "perturbation_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["label"] for r in rows} == {967, 282, 657}


def test_masking_table_offline(labelled: str, tmp_path) -> None:
    out = tmp_path / "m"
    assert run(["evaluate", "masking", "--data", labelled, "--out", str(out), "--methods", "gradcam",
                "--baselines", "zeros,mean", "--threshold", "0.05"]) == 0
    table = (out / "masking.md").read_text()
    assert table.startswith("| Method | Target | p_t | Zeros Pos. ori. | Zeros Pos. wtd.")
    assert "| GC | t1 |" in table and "| GC | t2 |" in table


def test_figures_and_norm_logit_offline(tmp_path) -> None:
    assert run(["evaluate", "figures", "--out", str(tmp_path / "f"), "--limit", "6", "--images", "1",
                "--methods", "gradcam"]) == 0
    assert (tmp_path / "f" / "original_vs_weighted_000.png").exists()
    assert (tmp_path / "f" / "mean_max_weighted_000.png").exists()
    assert run(["evaluate", "norm-logit", "--out", str(tmp_path / "n"), "--limit", "1"]) == 0
    summary = json.loads((tmp_path / "n" / "norm_logit_summary.json").read_text())
    assert summary["ranks_per_image"] == 145 and (tmp_path / "n" / "norm_logit.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["perturbation", "--data", "nowhere"], "no such file or folder"),
     (["perturbation", "--epsilons", "a,b"], "--epsilon takes numbers"),
     (["masking", "--rule", "odd"], "unknown --rule"),
     (["perturbation", "--contrasts", "nope"], "unknown contrast"),
     (["perturbation", "--data", "cub200:/nonexistent"], "no such folder")],
)
def test_bad_evaluate_input(args: list[str], message: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["evaluate", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_evaluate_takes_values_space_or_comma_separated(labelled: str, tmp_path) -> None:
    """One convention on every command: space-separated values (the new form) and the old comma form
    under the old option names give the same results."""
    new, old = tmp_path / "new", tmp_path / "old"
    assert run(["evaluate", "perturbation", "--data", labelled, "--limit", "2", "--out", str(new), "--steps", "1", "2",
                "--epsilon", "0.003", "0.001", "--contrast", "weighted", "max"]) == 0
    assert run(["evaluate", "perturbation", "--data", labelled, "--limit", "2", "--out", str(old), "--steps", "1,2",
                "--epsilons", "0.003,0.001", "--contrasts", "weighted,max"]) == 0
    a, b = (json.loads((d / "perturbation.json").read_text()) for d in (new, old))
    assert a == b and len(a) == 2 * 2 * 2
    assert {(r["contrast"], r["epsilon"], r["steps"]) for r in a} == {
        (c, e, s) for c in ("weighted", "max") for e in (0.003, 0.001) for s in (1, 2)}
    assert run(["evaluate", "masking", "--data", labelled, "--limit", "3", "--out", str(new), "--method", "gradcam",
                "xgradcam",
                "--baseline", "zeros", "mean", "--threshold", "0.05"]) == 0
    assert run(["evaluate", "masking", "--data", labelled, "--limit", "3", "--out", str(old), "--methods",
                "gradcam,xgradcam",
                "--baselines", "zeros,mean", "--threshold", "0.05"]) == 0
    assert (new / "masking.md").read_text() == (old / "masking.md").read_text()
    assert "| XC | t1 |" in (new / "masking.md").read_text()
