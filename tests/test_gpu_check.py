"""The GPU check runs end to end on the CPU (a tiny configuration), so it cannot rot before a GPU is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_rehearses_on_the_cpu(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check-cpu.json").read_text())
    assert report["status"] == "passed" and not report["ran_on_gpu"]
    assert [c["status"] for c in report["checks"]] == ["passed"] * 5, report["checks"]
    assert "no CUDA device" in report["checks"][0]["detail"]
    assert {r["workload"] for r in report["results"]["bench"]} == {"a", "b", "c", "d", "e"}
    assert {r["method"] for r in report["results"]["attribution"]} == {"integrated_gradients", "smoothgrad", "lrp"}
    assert report["results"]["perturbation"]["study_grid_hours"] > 0
    text = (tmp_path / "gpu-check-cpu.md").read_text()
    assert "Not yet run on a GPU" in text and "| e |" in text and "12 maps × one map" in text
