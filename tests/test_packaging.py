"""The package as users get it: a wheel built here, installed into a fresh virtual environment, run from
outside the repository; and the version, the module entry point and the citation agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import classcontrast as cc

ROOT = Path(__file__).resolve().parents[1]


def test_version_is_one_number_everywhere() -> None:
    from importlib.metadata import version

    assert cc.__version__ == version("classcontrast")
    assert f"version: {cc.__version__}" in (ROOT / "CITATION.cff").read_text()
    assert f"## {cc.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_python_dash_m() -> None:
    proc = subprocess.run([sys.executable, "-m", "classcontrast", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "explain" in proc.stdout and "audit" in proc.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel built from the repository's tracked files only (as from a clean clone, and without
    writing build/ into the working tree)."""
    src = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deprecated" not in proc.stderr.lower(), proc.stderr[-2000:]  # e.g. project.license as a table
    return out


def test_the_wheel_holds_the_package_data(dist: Path) -> None:
    (wheel,) = dist.glob("classcontrast-*.whl")
    (sdist,) = dist.glob("classcontrast-*.tar.gz")
    assert cc.__version__ in wheel.name and cc.__version__ in sdist.name
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("classcontrast/models/imagenet_classes.txt", "classcontrast/explorer/assets/viewer.js",
                   "classcontrast/explorer/assets/viewer.css", "classcontrast/py.typed",
                   "classcontrast/__main__.py"):
        assert needed in names, needed
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: MIT" in text and "Classifier: Topic :: Scientific/Engineering" in text
    assert re.search(r"Project-URL: Paper, https://openreview", text)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "classcontrast = classcontrast.cli.main:main" in entry


_DEPENDENCIES_MET = """
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
missing = []
reqs = [Requirement(r) for r in requires("classcontrast")]
for r in reqs:
    if r.marker is not None and not r.marker.evaluate({"extra": "demo"}):
        continue
    try:
        if not r.specifier.contains(version(r.name), prereleases=True):
            missing.append(f"{r} (found {version(r.name)})")
    except PackageNotFoundError:
        missing.append(str(r))
assert not missing, missing
print(len(reqs), "declared")
"""


def test_the_wheel_installs_and_runs_outside_the_repository(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("classcontrast-*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def pip(*args: str) -> None:
        proc = subprocess.run([str(bindir / "pip"), "install", "-q", *args], capture_output=True, text=True,
                              timeout=900, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]

    # Offline: the new environment sees this one's packages (torch, ...) after its own, through a .pth
    # file (a plain path: the editable install's finder there is not loaded); the wheel comes from its
    # file, and every dependency it declares (with the demo extra) must be met there, at its version.
    (site,) = env_dir.glob("lib/python*/site-packages")
    here = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "zz-running-environment.pth").write_text("\n".join(here) + "\n")
    pip("--no-index", "--no-deps", str(wheel))
    check = subprocess.run([str(bindir / "python"), "-c", _DEPENDENCIES_MET], capture_output=True, text=True,
                           timeout=120, env=env, cwd=tmp_path)
    assert check.returncode == 0 and "declared" in check.stdout, check.stdout + check.stderr[-2000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    probe = subprocess.run([str(bindir / "python"), "-c", "import classcontrast; print(classcontrast.__file__)"],
                           capture_output=True, text=True, timeout=120, env=env, cwd=outside)
    assert probe.returncode == 0, probe.stderr
    assert str(env_dir) in probe.stdout and str(ROOT) not in probe.stdout  # the installed copy, not the source
    run = subprocess.run([str(bindir / "classcontrast"), "explain", "--out", str(outside / "why.png"),
                          "--html", str(outside / "why.html")], capture_output=True, text=True, timeout=300,
                         env=env, cwd=outside)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tiger cat" in run.stdout
    assert (outside / "why.png").stat().st_size > 10_000 and (outside / "why.html").stat().st_size > 10_000
