"""The first hour of a new user, walked by a test: the README top to bottom (its first command, its
Python example, every command-line line) and every Python snippet of the documentation — each must run
as written and print no warning.

Files a snippet names are given as a newcomer has them: ``photo.jpg`` / ``cat.jpg`` (the bundled cat
photo) and ``photos/`` (class folders named after ImageNet classes) in the working folder. A docs block
that is a fragment (it uses your own ``model``) is marked ``<!-- not run: why -->`` right above it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import classcontrast as cc

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- not run: [^>]*-->[ \t]*\n)?```(\w*)\n(.*?)\n```", re.S)
PHOTOS = {"tiger cat": ["chelsea"], "espresso": ["coffee"], "space shuttle": ["rocket"]}

RUNNER = r'''
import json, sys, traceback, warnings
from pathlib import Path
blocks = json.loads(Path(sys.argv[1]).read_text())
results = []
for where, code in blocks:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exec(compile(code, where, "exec"), {"__name__": "__main__"})
            error = None
        except Exception:
            error = traceback.format_exc(limit=3)
    results.append({"where": where, "error": error,
                    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]})
print("RESULTS " + json.dumps(results))
'''


def code_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(language, code, marked "not run") for every fenced block of a Markdown file, in order."""
    return [(lang, code, bool(skip)) for skip, lang, code in BLOCK.findall(path.read_text())]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A newcomer's working folder: photo.jpg, cat.jpg and photos/<class>/<photo>.jpg."""
    d = tmp_path_factory.mktemp("newcomer")
    cc.sample_image("chelsea").convert("RGB").save(d / "photo.jpg", quality=92)
    cc.sample_image("chelsea").convert("RGB").save(d / "cat.jpg", quality=92)
    for cls, names in PHOTOS.items():
        (d / "photos" / cls).mkdir(parents=True)
        for n in names:
            cc.sample_image(n).convert("RGB").save(d / "photos" / cls / f"{n}.jpg", quality=92)
    return d


def _env() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="default")
    env.pop("PYTHONPATH", None)
    return env


def run_python_blocks(blocks: list[tuple[str, str]], cwd: Path) -> list[dict]:
    spec = cwd / "blocks.json"
    spec.write_text(json.dumps(blocks))
    runner = cwd / "runner.py"
    runner.write_text(RUNNER)
    proc = subprocess.run([sys.executable, str(runner), str(spec)], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS "))
    assert "warning" not in proc.stderr.lower(), proc.stderr[-2000:]
    return json.loads(line.removeprefix("RESULTS "))


def test_readme_starts_with_the_two_commands_and_make_demo_works() -> None:
    _, first, _ = code_blocks(ROOT / "README.md")[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == ["make demo", "make test"]
    demo = ROOT / "demo"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user's shell has it
    # -o: on the environment that exists (make test has just made it; a fresh clone's CI proves the install)
    proc = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "demo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "warning" not in proc.stderr.lower(), proc.stderr
    for name in ("why.png", "why.html", "why.npz"):
        assert (demo / name).stat().st_size > 10_000, name


def test_readme_python_and_command_line_run_as_written(workdir: Path) -> None:
    blocks = code_blocks(ROOT / "README.md")
    python = [code for lang, code, skip in blocks if lang == "python" and not skip]
    assert len(python) == 1 and len(python[0].splitlines()) <= 10  # the promised short example
    (result,) = run_python_blocks([("README.md", python[0])], workdir)
    assert result["error"] is None, result["error"]
    assert result["warnings"] == [], result["warnings"]
    assert (workdir / "why.png").stat().st_size > 10_000
    lines = [line for lang, code, skip in blocks if lang == "bash" and not skip for line in code.splitlines()]
    cli = [line.split("  #")[0].strip() for line in lines if line.startswith("classcontrast")]
    assert len(cli) == 5
    for line in cli:
        argv = shlex.split(line)
        proc = subprocess.run([sys.executable, "-m", "classcontrast", *argv[1:]], capture_output=True, text=True,
                              cwd=workdir, timeout=600, env=_env())
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
        assert "warning" not in proc.stderr.lower(), f"{line}\n{proc.stderr}"
    assert (workdir / "why.html").stat().st_size > 10_000 and (workdir / "audit" / "audit.html").is_file()
    makes = [line.split("#")[0].strip() for line in lines if line.startswith("make ")]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert all(m.split()[1] in targets for m in makes), makes  # make demo, make test, make docs-serve


def test_every_documentation_snippet_runs(workdir: Path) -> None:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    blocks = [(str(p.relative_to(ROOT)), code) for p in pages for lang, code, skip in code_blocks(p)
              if lang == "python" and not skip]
    assert len(blocks) >= 17  # every method and contrast page has one
    failed = [r for r in run_python_blocks(blocks, workdir) if r["error"] or r["warnings"]]
    assert not failed, "\n".join(f"{r['where']}: {r['error'] or r['warnings']}" for r in failed)
