"""Datasets at scale: `classcontrast.ray.Explain` in Ray Data's ``map_batches`` equals `cc.explain` image by image
(maps and scores exactly: each image is a call of its own); ``explain-dataset`` writes one Parquet schema, resumes a
killed run without losing or repeating a row, refuses to mix runs, and gives the same rows on Ray as locally; DuckDB
answers questions from the files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc
from classcontrast.methods import options_for
from classcontrast.ray import DatasetRequest, Explain, explain_dataset
from classcontrast.scale import store as store_module
from classcontrast.scale.table import rle, schema, unrle
from tests.test_cli import run

CONTRASTS = ("original", "weighted", "foil:281")
OPTIONS = {"steps": 3, "window": 56, "stride": 56}


def _images() -> list[np.ndarray]:
    """12 images of three sizes."""
    out = []
    for n, name in enumerate(["chelsea", "coffee", "astronaut", "rocket"] * 3):
        h, w = ((120, 160), (200, 150), (96, 96))[n % 3]
        out.append(np.asarray(cc.sample_image(name).convert("RGB").resize((w, h))))
    return out


def _rows_by(table: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = table.to_pylist()
    keyed = {(r["id"], r["method"], r["contrast"], r["unit"]): r for r in rows}
    assert len(keyed) == len(rows), "a row twice"
    return keyed


def test_explain_on_ray_equals_cc_explain_per_image(local_ray: Any, embedded: cc.ModelBundle) -> None:
    images = _images()
    ds = local_ray.data.from_items([{"image": a, "id": f"img{i}", "batch": i % 2} for i, a in enumerate(images)])
    methods = ["gradcam", "integrated_gradients", "occlusion"]
    out = ds.map_batches(Explain, fn_constructor_args=("efficientnet_lite0", methods, CONTRASTS),
                         fn_constructor_kwargs=OPTIONS, batch_size=5, concurrency=2, batch_format="numpy")
    import pyarrow as pa

    rows = _rows_by(pa.concat_tables(list(out.iter_batches(batch_size=None, batch_format="pyarrow"))))
    assert len(rows) == len(images) * len(methods) * len(CONTRASTS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker of one CPU computes (a thread count changes float sums' order)
    try:
        _compare(images, methods, rows, embedded)
    finally:
        torch.set_num_threads(threads)


def _compare(images: list[np.ndarray], methods: list[str], rows: dict[tuple[Any, ...], dict[str, Any]],
             embedded: cc.ModelBundle) -> None:
    for i, a in enumerate(images):
        x = embedded.transform(Image.fromarray(a))[None]
        for m in methods:
            ex = cc.explain(embedded, x, m, ["original", "weighted", cc.Foil(281)], **options_for(m, OPTIONS))
            for key, e in ex.items():
                r = rows[(f"img{i}", m, key, 0)]
                assert r["batch"] == i % 2 and r["target"] == int(e.targets[0, 0])  # the image's own columns
                assert r["score"] == float(e.scores[0, 0])
                got = np.asarray(r["map"], dtype=np.float32).reshape(r["map_shape"])
                want = e.maps[0, 0].numpy()
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))


def _folder(tmp: Path) -> Path:
    data = tmp / "data"
    for cls, names in (("tabby", ["chelsea", "astronaut", "rocket"]), ("espresso", ["coffee", "chelsea"])):
        (data / cls).mkdir(parents=True)
        for j, name in enumerate(names):
            cc.sample_image(name).convert("RGB").resize((100 + 20 * j, 90)).save(data / cls / f"{name}.png")
    return data


def test_a_killed_explain_dataset_resumes_with_every_row_once(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = _folder(tmp_path)
    req = DatasetRequest(model="efficientnet_lite0", data=str(data), out=tmp_path / "out",
                         methods=["gradcam", "occlusion"], contrasts=list(CONTRASTS), options=OPTIONS, batch_size=2)
    whole = explain_dataset(DatasetRequest(**{**req.__dict__, "out": tmp_path / "whole"}))
    import pyarrow.parquet as pq

    reference = _rows_by(pq.read_table(tmp_path / "whole"))
    assert whole.explained == 5 and len(reference) == 5 * 2 * 3
    write = store_module.PartStore.write
    calls = [0]

    def dies_after_two(self: Any, table: Any) -> Any:
        calls[0] += 1
        if calls[0] == 3:  # killed while writing the third part: its temporary file is left behind
            (self.out / ".part-dead.tmp").write_bytes(b"half")
            raise KeyboardInterrupt
        return write(self, table)

    monkeypatch.setattr(store_module.PartStore, "write", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        explain_dataset(req)
    monkeypatch.undo()
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 2
    again = explain_dataset(req)
    assert (again.before, again.explained) == (4, 1) and not list((tmp_path / "out").glob(".*.tmp"))
    resumed = _rows_by(pq.read_table(tmp_path / "out"))
    assert resumed.keys() == reference.keys()
    for key, r in resumed.items():
        assert r["score"] == reference[key]["score"] and r["map"] == reference[key]["map"]
    assert explain_dataset(req).explained == 0  # nothing left
    for part in (tmp_path / "out").glob("part-*.parquet"):
        assert pq.read_schema(part).remove_metadata() == schema()
    with pytest.raises(cc.ClassContrastError, match="holds the results of another run"):
        explain_dataset(DatasetRequest(**{**req.__dict__, "methods": ["gradient"]}))


def test_the_ray_engine_writes_the_local_engines_rows(tmp_path: Path, local_ray: Any) -> None:
    """The same rows on both engines; a broken file among the images is skipped by both, named in one line."""
    data = _folder(tmp_path)
    broken = data / "tabby" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not the rest of a PNG")
    base = {"model": "efficientnet_lite0", "data": str(data), "methods": ["gradcam"], "contrasts": list(CONTRASTS),
            "batch_size": 2}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the Ray workers (one CPU each): the same float sums' order
    said: dict[str, list[str]] = {"local": [], "ray": []}
    try:
        explain_dataset(DatasetRequest(out=tmp_path / "local", **base), report=said["local"].append)
    finally:
        torch.set_num_threads(threads)
    done = explain_dataset(DatasetRequest(out=tmp_path / "ray", engine="ray", concurrency=2, **base),
                           report=said["ray"].append)
    assert done.explained == 5 and done.skipped == [str(broken)]
    assert said["ray"] == said["local"] and len(said["ray"]) == 1 and str(broken) in said["ray"][0]
    import pyarrow.parquet as pq

    local, ray = _rows_by(pq.read_table(tmp_path / "local")), _rows_by(pq.read_table(tmp_path / "ray"))
    assert local.keys() == ray.keys()
    for key, r in local.items():
        assert {k: v for k, v in ray[key].items() if k != "map"} == {k: v for k, v in r.items() if k != "map"}
        np.testing.assert_array_equal(np.asarray(ray[key]["map"]), np.asarray(r["map"]))


def test_a_datasets_images_are_decoded_in_the_ray_workers(tmp_path: Path, local_ray: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hugging Face dataset (the hub's Parquet layout) on Ray: the rows carry each image's stored bytes, decoded in
    the workers (the driver decodes none but the image no worker could read, to name it), the same rows as the local
    engine; a broken image is skipped by both."""
    datasets = pytest.importorskip("datasets")
    import io

    def png(name: str) -> bytes:
        buf = io.BytesIO()
        cc.sample_image(name).convert("RGB").resize((64, 48)).save(buf, format="PNG")
        return buf.getvalue()

    images = [{"bytes": png(n), "path": None} for n in ("chelsea", "coffee")] + [{"bytes": b"not a PNG", "path": None}]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["tabby", "cup"])})
    (tmp_path / "hub").mkdir()
    datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0]}, features=features).to_parquet(
        str(tmp_path / "hub" / "test-00000-of-00001.parquet"))
    base = {"model": "efficientnet_lite0", "data": str(tmp_path / "hub"), "methods": ["gradient"],
            "contrasts": ["weighted"], "batch_size": 2}
    said: dict[str, list[str]] = {"local": [], "ray": []}
    done = explain_dataset(DatasetRequest(out=tmp_path / "local", **base), report=said["local"].append)
    assert done.explained == 2 and len(done.skipped) == 1 and "#2" in said["local"][0]
    from classcontrast.data import hf

    decode = hf._Reader.__call__

    def no_decoding(self: Any) -> Any:
        assert self.i == 2, "the driver decoded a readable image"
        return decode(self)

    monkeypatch.setattr(hf._Reader, "__call__", no_decoding)
    done = explain_dataset(DatasetRequest(out=tmp_path / "ray", engine="ray", concurrency=1, **base),
                           report=said["ray"].append)
    assert done.explained == 2 and said["ray"] == said["local"]
    import pyarrow.parquet as pq

    local, ray = _rows_by(pq.read_table(tmp_path / "local")), _rows_by(pq.read_table(tmp_path / "ray"))
    assert local.keys() == ray.keys() and "encoded" not in pq.read_schema(next((tmp_path / "ray").glob("*.parquet")))
    for key, r in local.items():
        np.testing.assert_allclose(np.asarray(ray[key]["map"]), np.asarray(r["map"]), rtol=1e-4,
                                   atol=1e-5 * float(np.abs(np.asarray(r["map"])).max()))


def test_duckdb_answers_from_the_files_alone(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    data = _folder(tmp_path)
    out = tmp_path / "out"
    assert run(["explain-dataset", str(data), "--out", str(out), "--method", "gradcam", "--contrast", "original",
                "weighted", "--maps", "none", "--batch-size", "3"]) == 0
    rows = duckdb.sql(f"SELECT label_name, predicted_name, contrast, score FROM '{out}/*.parquet'").fetchall()
    assert len(rows) == 5 * 2 and all(r[0] in ("tabby", "espresso") for r in rows)
    confused = duckdb.sql(f"""SELECT label_name, predicted_name, count(*) FROM '{out}/*.parquet'
                              WHERE contrast = 'weighted' AND label_name <> predicted_name
                              GROUP BY ALL ORDER BY 3 DESC""").fetchall()
    wrong = sum(1 for r in rows if r[2] == "weighted" and r[0] != r[1])
    assert sum(c for *_, c in confused) == wrong
    # the scores agree with the library's own call on one file
    bundle = cc.load_model()
    x = bundle.transform(cc.load_image(data / "tabby" / "chelsea.png"))[None]
    want = float(cc.explain(bundle, x, "gradcam", "weighted").scores[0, 0])
    got = duckdb.sql(f"SELECT score FROM '{out}/*.parquet' WHERE id = 'tabby/chelsea.png' AND contrast = 'weighted'")
    assert got.fetchall()[0][0] == want
    assert torch.tensor(want).isfinite()


def test_nothing_imports_ray_unless_asked() -> None:
    import subprocess
    import sys

    code = ("import sys, classcontrast, classcontrast.ray, classcontrast.cli.main; "
            "from classcontrast.ray import Explain; Explain('efficientnet_lite0'); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_pyarrow_one_line_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find(name, *a))
    assert run(["explain-dataset", "--out", str(tmp_path / "out"), "--method", "gradient"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'classcontrast[parquet]'" in err and "Traceback" not in err and not (tmp_path / "out").exists()
    assert run(["concepts", "--target", "1", "--layer", "blocks.5", "--out", str(tmp_path / "atlas")]) == 2  # the atlas
    err = capsys.readouterr().err
    assert "concepts writes Parquet" in err and "Traceback" not in err and not (tmp_path / "atlas").exists()


def test_top_k_is_read_per_kind(tmp_path: Path) -> None:
    """--top-k k on a segmenter: its k largest regions (Region.all(k)), as explain reads it."""
    import json

    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()
    cc.sample_image("coffee").convert("RGB").resize((96, 80)).save(data / "cup.png")
    out = tmp_path / "out"
    assert run(["explain-dataset", str(data), "--out", str(out), "--model", "torchvision:lraspp_mobilenet_v3_large",
                "--weights", "none", "--method", "gradient", "--contrast", "weighted", "--top-k", "2",
                "--maps", "none"]) == 0
    assert json.loads((out / "_run.json").read_text())["targets"] == repr(cc.Region.all(2))
    rows = pq.read_table(out).to_pylist()
    assert rows and {r["unit_kind"] for r in rows} == {"region"}
    # each region's mask travels in its row, as COCO's RLE (pycocotools decodes it), equal to the engine's
    from pycocotools import mask as coco_mask

    bundle = cc.load_model("torchvision:lraspp_mobilenet_v3_large", weights="none")
    x = bundle.transform(cc.load_image(data / "cup.png"))[None]
    ex = cc.explain(bundle, x, "gradient", "weighted", cc.Region.all(2))
    for r in rows:
        encoded = json.loads(r["unit_fields"])["mask"]
        h, w = encoded["size"]
        decoded = coco_mask.decode(coco_mask.frPyObjects(encoded, h, w)).astype(bool)
        assert np.array_equal(decoded, ex.units[0][r["unit"]]["mask"].numpy())
        assert np.array_equal(unrle(encoded), decoded) and decoded.sum() == json.loads(r["unit_fields"])["pixels"]


def test_run_length_encoding_round_trips() -> None:
    """`rle` on hand-computed cases (a first run of ones starts with a zero count; column-major) and 3-D arrays."""
    assert rle(np.array([[0, 1], [1, 1]], dtype=bool)) == {"size": [2, 2], "counts": [1, 3]}
    assert rle(np.array([[1, 0], [1, 0]], dtype=bool)) == {"size": [2, 2], "counts": [0, 2, 2]}
    assert rle(np.zeros((0, 3), dtype=bool))["counts"] == []
    cube = np.random.default_rng(0).random((3, 4, 5)) > 0.5
    assert np.array_equal(unrle(rle(cube)), cube)


def test_target_classes_are_explained_on_every_image(tmp_path: Path) -> None:
    """--target A B: both classes on each image (a name or an index), as explain's --target."""
    import pyarrow.parquet as pq

    data = _folder(tmp_path)
    out = tmp_path / "out"
    assert run(["explain-dataset", str(data), "--out", str(out), "--method", "gradient", "--contrast", "weighted",
                "--target", "tabby", "--target", "967", "--maps", "none"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 5 * 2
    assert {(r["unit"], r["target"], r["target_name"]) for r in rows} == {(0, 281, "tabby"), (1, 967, "espresso")}
