"""A re-used output folder never returns another run's results.

Each case runs a command into a folder, then again with ONE input changed (an image's content under the
same file name, the preprocessing, top-k, the limit, the model, a method option), and compares what the
second run wrote with a clean run of the second setting, byte for byte on the JSON and the maps. Before
results were keyed by content, every one of these silently reused the first run's rows or maps.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import classcontrast as cc
from classcontrast.data.sources import bundled_source
from classcontrast.evaluation import run_perturbation
from classcontrast.evaluation.faithfulness import run_faithfulness
from classcontrast.models import set_preprocess

VIEWS = ["chelsea/full", "coffee/full", "rocket/full", "astronaut/tl", "chelsea/mirror", "coffee/br"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat folder of six photos (no labels: the audit pairs each image's top-1 with its top-2)."""
    root = tmp_path_factory.mktemp("flat")
    views = {s.id: s for s in bundled_source()}
    for i, v in enumerate(VIEWS):
        views[v].load().resize((160, 120)).save(root / f"img{i}.png")
    return root


def _changed_content(root: Path, dest: Path) -> Path:
    """The same file names, two of them holding other photos."""
    shutil.copytree(root, dest)
    a, b = dest / "img0.png", dest / "img2.png"
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)
    return dest


def _contents(out: Path) -> dict[str, Any]:
    """What a run wrote that a user reads: every JSON/CSV file's bytes and every saved array."""
    got: dict[str, Any] = {}
    for f in sorted(out.rglob("*")):
        rel = str(f.relative_to(out))
        if f.suffix in {".json", ".csv"}:
            got[rel] = f.read_bytes()
        elif f.suffix == ".npz":
            with np.load(f) as z:
                got[rel] = {k: z[k] for k in z.files}
    return got


def _assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert a[k].keys() == b[k].keys(), k
            for name in a[k]:
                np.testing.assert_array_equal(a[k][name], b[k][name], err_msg=f"{k}:{name}")
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def random_lite0() -> cc.ModelBundle:
    return cc.load_model("efficientnet_lite0", weights=None)


def _bundle(embedded: cc.ModelBundle, preprocess: str = "model") -> cc.ModelBundle:
    b = copy.copy(embedded)
    return set_preprocess(b, preprocess)


# one change at a time: (name, how the second run differs from the first)
CHANGES = ["content", "preprocess", "top_k", "limit", "model", "method_option"]


def _audit_setting(change: str | None, images: Path, tmp: Path, embedded: cc.ModelBundle,
                   other_model: cc.ModelBundle) -> dict[str, Any]:
    s: dict[str, Any] = {"model": _bundle(embedded), "data": str(images), "methods": ["integrated_gradients"],
                         "pairs": 3, "examples": 2, "top_k": 1, "limit": 5, "steps": 2, "batch_size": 4,
                         "ambiguity": 0.0}  # every image counts in its top-1 vs top-2 pair: maps to reuse
    if change == "content":
        s["data"] = str(_changed_content(images, tmp / "changed"))
    elif change == "preprocess":
        s["model"] = _bundle(embedded, "study-cub")
    elif change == "top_k":
        s["top_k"] = 3
    elif change == "limit":
        s["limit"] = 6
    elif change == "model":
        s["model"] = other_model
    elif change == "method_option":
        s["steps"] = 3
    return s


@pytest.fixture(scope="module")
def first_audit(images: Path, tmp_path_factory: pytest.TempPathFactory, embedded: cc.ModelBundle,
                random_lite0: cc.ModelBundle) -> Path:
    """The first run, once: each case copies its folder and runs the changed setting into the copy."""
    out = tmp_path_factory.mktemp("first") / "audit"
    cc.audit(out=out, **_audit_setting(None, images, out.parent, embedded, random_lite0))
    return out


@pytest.mark.parametrize("change", CHANGES)
def test_audit_into_a_used_folder_equals_a_clean_run(change: str, images: Path, tmp_path: Path, first_audit: Path,
                                                     embedded: cc.ModelBundle, random_lite0: cc.ModelBundle) -> None:
    second = _audit_setting(change, images, tmp_path, embedded, random_lite0)
    reused, clean = tmp_path / "reused", tmp_path / "clean"
    shutil.copytree(first_audit, reused)
    cc.audit(out=reused, **second)
    cc.audit(out=clean, **second)
    a, b = _contents(reused), _contents(clean)
    assert "audit.json" in a and any(k.startswith("maps") for k in a)
    _assert_same(a, b)


Runner = Callable[[cc.ModelBundle, Any, Path], Any]


def _perturbation(bundle: cc.ModelBundle, source: Any, log: Path) -> Any:
    return run_perturbation(bundle, source, ["weighted"], [0.003], [1], batch_size=3, log_path=log)


def _faithfulness(bundle: cc.ModelBundle, source: Any, log: Path) -> Any:
    return run_faithfulness(bundle, source, ["gradcam"], ["weighted"], ["zeros"], ["probability"], [0.5, 1.0],
                            batch_size=3, log_path=log)


@pytest.mark.parametrize("runner", [_perturbation, _faithfulness], ids=["perturbation", "faithfulness"])
@pytest.mark.parametrize("change", ["content", "preprocess", "limit", "model"])
def test_evaluate_into_a_used_folder_equals_a_clean_run(runner: Runner, change: str, images: Path, tmp_path: Path,
                                                        embedded: cc.ModelBundle,
                                                        random_lite0: cc.ModelBundle) -> None:
    from classcontrast.data.specs import open_source

    changed = _changed_content(images, tmp_path / "changed")

    def setting(which: str | None) -> tuple[cc.ModelBundle, Any]:
        bundle, data, limit = _bundle(embedded), images, 3
        if which == "content":
            data = changed
        elif which == "preprocess":
            bundle = _bundle(embedded, "study-cub")
        elif which == "limit":
            limit = 6
        elif which == "model":
            bundle = random_lite0
        return bundle, open_source(str(data), bundle.categories).select(limit=limit, seed=0)

    log = tmp_path / "rows.jsonl"
    runner(*setting(None), log)
    reused = runner(*setting(change), log)
    clean = runner(*setting(change), tmp_path / "clean.jsonl")
    assert json.dumps(reused, sort_keys=True, default=str) == json.dumps(clean, sort_keys=True, default=str)


def test_rows_of_a_changed_file_are_recomputed_not_trusted(images: Path, tmp_path: Path,
                                                           embedded: cc.ModelBundle) -> None:
    """The content stamp itself: the same name with other bytes is another sample."""
    from classcontrast.data.specs import open_source

    a = open_source(str(images), embedded.categories)
    b = open_source(str(_changed_content(images, tmp_path / "changed")), embedded.categories)
    stamps_a = {s.id: s.stamp() for s in a}
    stamps_b = {s.id: s.stamp() for s in b}
    assert stamps_a.keys() == stamps_b.keys()
    changed = {k for k in stamps_a if stamps_a[k] != stamps_b[k]}
    assert changed == {"img0.png", "img2.png"}
    assert torch.equal(b.samples[1].prepared(embedded.preprocess), a.samples[1].prepared(embedded.preprocess))
