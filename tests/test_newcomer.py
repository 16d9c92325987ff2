"""The first hour of a new user, walked by a test: the README top to bottom (its first command, its
Python example, every command-line line) and every Python snippet of the documentation — each must run
as written and print no warning.

Files a command line names are given as a newcomer has them: ``photo.jpg`` / ``cat.jpg`` / ``dog.jpg`` /
``img.png`` / ``xray.png`` (bundled photos), ``clip.mp4`` (20 frames of noise), ``scan.nii.gz`` (a 32³ volume),
``photos/`` (class folders named after ImageNet classes),
``animals/`` (class folders of the zero-shot page's classes), ``answers/`` (``yes/`` and ``no/``: the
vision-language page's audit) and the CSVs of label sets the pages use, in
the working folder. Python snippets use only what they make themselves (``cc.sample_image``, models with
random weights, folders they write) and run first, in page order; then every command line runs, in one
process. A block of command lines that takes minutes, installs packages or needs a dataset is marked
``<!-- not run: why -->`` right above it: its ``classcontrast`` lines are parsed (the command and every
option exist, every value has the right type), its ``make`` lines name targets that exist. Python blocks
are never marked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
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
    # a library's own deprecation inside its own code (Ray Data reading its deprecated settings) is hidden by Python's
    # default filters and is not the snippet's: every other warning counts
    shown = [w for w in caught if not (issubclass(w.category, DeprecationWarning) and "/ray/" in w.filename)]
    results.append({"where": where, "error": error,
                    "warnings": [f"{w.category.__name__}: {w.message}" for w in shown]})
print("RESULTS " + json.dumps(results))
'''


def code_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(language, code, marked "not run") for every fenced block of a Markdown file, in order."""
    return [(lang, code, bool(skip)) for skip, lang, code in BLOCK.findall(path.read_text())]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A newcomer's working folder: the photos and folders the documentation's command lines name."""
    d = tmp_path_factory.mktemp("newcomer")
    for name, photo in (("photo.jpg", "chelsea"), ("cat.jpg", "chelsea"), ("dog.jpg", "chelsea"),
                        ("img.png", "coffee"), ("xray.png", "astronaut")):
        cc.sample_image(photo).convert("RGB").save(d / name, **({"quality": 92} if name.endswith("jpg") else {}))
    for cls, names in PHOTOS.items():
        (d / "photos" / cls).mkdir(parents=True)
        for n in names:
            cc.sample_image(n).convert("RGB").save(d / "photos" / cls / f"{n}.jpg", quality=92)
    for cls, names in (("husky", ["chelsea"]), ("wolf", ["coffee", "rocket"])):
        (d / "animals" / cls).mkdir(parents=True)
        for n in names:
            cc.sample_image(n).convert("RGB").save(d / "animals" / cls / f"{n}.jpg", quality=92)
    for answer, names in (("yes", ["chelsea"]), ("no", ["coffee"])):  # the vision-language page's audit
        (d / "answers" / answer).mkdir(parents=True)
        for n in names:
            cc.sample_image(n).convert("RGB").save(d / "answers" / answer / f"{n}.jpg", quality=92)
    frames = (np.random.default_rng(0).uniform(0, 1, size=(20, 48, 64, 3)) * 255).astype(np.uint8)
    cc.save_video(d / "clip.mp4", frames, fps=8)  # longer than r3d_18's 16 frames, as a user's clip is
    nibabel.save(nibabel.Nifti1Image(np.random.default_rng(1).normal(size=(32, 32, 32)).astype(np.float32),
                                     np.diag([1.5, 1.5, 2.0, 1.0])), d / "scan.nii.gz")
    (d / "labels.csv").write_text("path,labels\nphotos/tiger cat/chelsea.jpg,tiger cat;Egyptian cat\n"
                                  "photos/espresso/coffee.jpg,espresso\nphotos/espresso/coffee.jpg,cup\n")
    (d / "findings.csv").write_text("path,labels\nxray.png,effusion;nodule\nimg.png,\nphoto.jpg,normal\n")
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
    proc = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.demo", "demo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "warning" not in proc.stderr.lower(), proc.stderr
    for name in ("why.png", "why.html", "why.npz"):
        assert (demo / name).stat().st_size > 10_000, name


def test_make_demo_installs_what_the_demo_needs_only() -> None:
    """make demo's environment is torch and the package with its demo extra (today's main installed the test, docs
    and Hugging Face extras too: a 7.1 GB environment, 3 minutes); make test adds the rest."""
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-B", "demo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    installs = [line for line in proc.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [".venv/bin/pip install torch==2.14.1 torchvision==0.29.1", '.venv/bin/pip install -e ".[demo]"']
    proc = subprocess.run(["make", "--no-print-directory", "-n", "-B", "test"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert '.venv/bin/pip install -e ".[demo,test,docs,hf]"' in proc.stdout


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


CLI_RUNNER = r'''
import contextlib, io, json, sys, warnings
from pathlib import Path
from classcontrast.cli.main import main
lines = json.loads(Path(sys.argv[1]).read_text())
results = []
for where, argv in lines:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    results.append({"where": where, "code": code, "stderr": err.getvalue()})
print("RESULTS " + json.dumps(results))
'''


def command_lines(code: str) -> list[str]:
    """The shell lines of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines() if line.strip() and
            not line.strip().startswith("#")]


def parses(argv: list[str]) -> str | None:
    """None when the command and every option of ``argv`` exist and every value has the right type."""
    import typer.main

    from classcontrast.cli.main import app
    from classcontrast.cli.options import expand_multi_options

    command: object = typer.main.get_command(app)
    args = expand_multi_options(argv)
    while hasattr(command, "commands") and args and args[0] in command.commands:  # type: ignore[attr-defined]
        command, args = command.commands[args[0]], args[1:]  # type: ignore[attr-defined]
    try:
        command.make_context("classcontrast", [a for a in args if a != "..."])  # type: ignore[attr-defined]
    except Exception as e:  # click's usage errors
        return f"{type(e).__name__}: {e}"
    return None


def test_every_documentation_snippet_runs(workdir: Path) -> None:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    found = [(str(p.relative_to(ROOT)), lang, code, skip) for p in pages for lang, code, skip in code_blocks(p)]
    python = [(where, code) for where, lang, code, _ in found if lang == "python"]
    assert not [where for where, lang, _, skip in found if lang == "python" and skip]  # Python blocks all run
    assert len(python) >= 25  # every method and contrast page has one, and every guide
    failed = [r for r in run_python_blocks(python, workdir) if r["error"] or r["warnings"]]
    assert not failed, "\n".join(f"{r['where']}: {r['error'] or r['warnings']}" for r in failed)

    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    run, parsed = [], 0
    for where, lang, code, skip in found:
        if lang not in ("", "bash"):
            continue
        lines = command_lines(code)
        for line in lines:
            if line.startswith("make "):
                assert line.split()[1] in targets, (where, line)
            elif line.startswith("classcontrast "):
                argv = shlex.split(line)[1:]
                if skip:
                    assert parses(argv) is None, (where, line, parses(argv))
                    parsed += 1
                else:
                    run.append((where, argv))
            elif any(line.startswith(c) for c in ("git ", "pip ", "torchrun ")):
                assert skip, f"{where}: {line!r} cannot run in the tests; mark its block <!-- not run: why -->"
    assert len(run) >= 20 and parsed >= 8
    spec = workdir / "lines.json"
    spec.write_text(json.dumps(run))
    (workdir / "cli_runner.py").write_text(CLI_RUNNER)
    proc = subprocess.run([sys.executable, "cli_runner.py", str(spec)], capture_output=True, text=True, cwd=workdir,
                          timeout=900, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")).removeprefix("RESULTS "))
    bad = [r for r in results if r["code"] != 0 or "warning" in r["stderr"].lower()]
    assert not bad, "\n".join(f"{r['where']} ({r['code']}): {r['stderr'][-600:]}" for r in bad)
