"""``classcontrast reproduce``: a report, identical numbers under torchrun, and kill-then-resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import classcontrast as cc
from classcontrast.reproduce import load_config

BIN = Path(sys.executable).parent
CONFIG = """
[run]
threads = 1
device = "cpu"
batch_size = 2
seed = 0
model = "torchvision:mobilenet_v3_small"  # random weights: the mechanics, cheaply
weights = "none"

[[experiment]]
kind = "perturbation"
name = "pert"
limit = 6
contrasts = ["weighted", "original"]
epsilons = [0.003]
steps = [1, 2]

[[experiment]]
kind = "masking"
name = "mask"
limit = 6
methods = ["gradcam"]
baselines = ["zeros", "blur"]
sigma = [10, 20]
threshold = 0.0

[[experiment]]
kind = "norm_logit"
name = "norm"
limit = 2
batch_size = 1

[[experiment]]
kind = "faithfulness"
name = "faith"
limit = 4
methods = ["gradcam"]
contrasts = ["weighted", "max"]
baselines = ["zeros", "mean"]
fractions = [0.25, 0.5, 0.75, 1.0]
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    p.write_text(CONFIG)
    return p


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "classcontrast.cli.main", *args]


def _numbers(out: Path) -> dict[str, object]:
    return {
        "pert": json.loads((out / "pert" / "perturbation.json").read_text()),
        "mask": json.loads((out / "mask" / "masking.json").read_text())["records"],
        "norm": json.loads((out / "norm" / "norm_logit_summary.json").read_text()),
        "faith": json.loads((out / "faith" / "faithfulness.json").read_text()),
    }


def _rows(folder: Path, key: tuple[str, ...]) -> list[tuple[object, ...]]:
    rows = []
    for f in folder.glob("*_samples*.jsonl"):
        rows += [tuple(r[k] for k in key) for r in map(json.loads, f.read_text().splitlines())]
    return rows


@pytest.fixture(scope="module")
def single(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single")
    proc = subprocess.run(_cli("reproduce", str(config), "--out", str(out)), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_report_is_written(single: Path) -> None:
    md = (single / "report.md").read_text()
    assert "## perturbation: pert" in md and "## masking: mask" in md and "The study's Table 1" in md
    assert "## faithfulness: faith" in md and "| random | weighted |" in md
    html = (single / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html
    assert json.loads((single / "versions.json").read_text())["torch"]
    assert (single / "config.toml").read_text() == CONFIG


def test_torchrun_two_processes_give_identical_numbers(config: Path, single: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(BIN / "torchrun"), "--nproc_per_node=2", "--master_port=29517", "-m", "classcontrast.cli.main",
           "reproduce", str(config), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _numbers(tmp_path) == _numbers(single)
    assert (tmp_path / "pert" / "perturbation_samples.rank1.jsonl").exists()  # rank 1 did half the work
    assert json.loads((tmp_path / "versions.json").read_text())["processes"] == "2"


def test_killed_run_resumes_with_identical_numbers(config: Path, single: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(_cli("reproduce", str(config), "--out", str(tmp_path)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = tmp_path / "mask" / "masking_samples.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.stat().st_size > 0):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # half-way: perturbation done, masking started
    proc.wait()
    assert not (tmp_path / "report.md").exists()
    again = subprocess.run(_cli("reproduce", str(config), "--out", str(tmp_path)), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _numbers(tmp_path) == _numbers(single)
    for sub, key in [("pert", ("id", "contrast", "epsilon", "steps")),
                     ("mask", ("id", "method", "target_index", "baseline", "mode", "rule")), ("norm", ("id", "rank")),
                     ("faith", ("id", "method", "contrast", "baseline"))]:
        rows = _rows(tmp_path / sub, key)
        assert len(rows) == len(set(rows)), f"duplicates in {sub}"


def test_a_line_cut_by_a_crash_is_recomputed(single: Path, tmp_path: Path, config: Path) -> None:
    shutil.copytree(single, tmp_path / "r", dirs_exist_ok=True)
    log = tmp_path / "r" / "pert" / "perturbation_samples.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:25])  # the last rows lost, one cut in half
    out = tmp_path / "r"
    proc = subprocess.run(_cli("reproduce", str(config), "--out", str(out)), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _numbers(out) == _numbers(single)


def test_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[experiment]]\nkind = "perturbation"\nepsilon = [1]\n')
    with pytest.raises(cc.ClassContrastError, match="unknown option"):
        load_config(bad)
    bad.write_text('[[experiment]]\nkind = "dance"\n')
    with pytest.raises(cc.ClassContrastError, match="kind 'dance'"):
        load_config(bad)
    bad.write_text('[[experiment]]\nkind = "faithfulness"\nmethods = ["gradcam"]\nmethod_options = { steps = 4 }\n')
    with pytest.raises(cc.ClassContrastError, match=r"bad.toml: experiment 1 \(faithfulness\): steps is not an option"):
        load_config(bad)
    bad.write_text('[[experiment]]\nkind = "faithfulness"\nmethods = ["integrated_gradients"]\n'
                   'method_options = { steps = 4 }\n')
    assert load_config(bad).experiments[0].options["method_options"] == {"steps": 4}
    bad.write_text("not toml [")
    with pytest.raises(cc.ClassContrastError, match="not valid TOML"):
        load_config(bad)


def test_shipped_configs_parse() -> None:
    root = Path(__file__).parent.parent / "configs"
    smoke, study = load_config(root / "smoke.toml"), load_config(root / "study.toml")
    assert {e.kind for e in smoke.experiments} == {"perturbation", "masking", "figures", "norm_logit", "faithfulness"}
    assert sum(e.kind == "perturbation" for e in study.experiments) == 9
