"""A Hugging Face ``datasets`` folder as ``--data``: the images and ClassLabel names of ``save_to_disk``'s folders,
matched to the model's classes by name in any order; audited end to end, equal to the audit of the same images as
class folders (the independent reader); splits, label sets and bad folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import classcontrast as cc
from classcontrast.data.specs import open_source
from classcontrast.errors import ClassContrastError
from tests.test_audit import folders  # noqa: F401  (the class folders, a module fixture)
from tests.test_cli import run

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def hf_folder(embedded: cc.ModelBundle, folders: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The class folders' images (their PNG bytes) as a DatasetDict {test, extra}, in the class folders' order, the
    ClassLabel's names in another order than the model's (reversed), "extra" holding two unlabelled (-1) images."""
    source = open_source(str(folders), embedded.categories)
    names = sorted({embedded.categories[s.label] for s in source}, reverse=True)
    features = datasets.Features({"img": datasets.Image(), "note": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names)})
    rows = {"img": [{"bytes": Path(s.path).read_bytes(), "path": None} for s in source],
            "note": [s.id for s in source], "label": [names.index(embedded.categories[s.label]) for s in source]}
    test = datasets.Dataset.from_dict(rows, features=features)
    extra = datasets.Dataset.from_dict({k: v[:2] for k, v in rows.items()} | {"label": [-1, -1]}, features=features)
    out = tmp_path_factory.mktemp("hf") / "dataset"
    datasets.DatasetDict({"test": test, "extra": extra}).save_to_disk(str(out))
    return out


def test_an_hf_audit_equals_the_class_folder_audit(embedded: cc.ModelBundle, folders: Path,  # noqa: F811
                                                   hf_folder: Path, tmp_path: Path) -> None:
    kwargs = {"methods": ["gradcam"], "pairs": 3, "examples": 2, "batch_size": 8}
    want = cc.audit(embedded, str(folders), tmp_path / "folders", **kwargs)
    got = cc.audit(embedded, open_source(str(hf_folder), embedded.categories, split="test"), tmp_path / "hf", **kwargs)
    ids = {f"test/{i}": s.id for i, s in enumerate(open_source(str(folders), embedded.categories))}
    assert got.n == want.n and got.accuracy == want.accuracy and got.labelled
    np.testing.assert_array_equal(got.confusion, want.confusion)
    assert [(p.true, p.predicted, p.count) for p in got.pairs] == [(p.true, p.predicted, p.count) for p in want.pairs]
    for a, b in zip(got.slots, want.slots, strict=True):
        assert ids[a.row["id"]] == b.row["id"] and a.classes == b.classes
        np.testing.assert_array_equal(got.maps[a.entry]["maps"]["gradcam"], want.maps[b.entry]["maps"]["gradcam"])
    report = json.loads((tmp_path / "hf" / "audit.json").read_text())
    assert report["data"] == f"the datasets folder {hf_folder}[test]"


def test_splits_unlabelled_rows_and_bad_folders(embedded: cc.ModelBundle, hf_folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    extra = open_source(str(hf_folder), embedded.categories, split="extra")
    assert len(extra) == 2 and all(s.label is None for s in extra)  # -1: the model's prediction is used
    assert open_source(str(hf_folder / "extra"), embedded.categories).samples[0].stamp() == extra.samples[0].stamp()
    with pytest.raises(ClassContrastError, match=r"holds several splits \(test, extra\): choose one with --split"):
        open_source(str(hf_folder), embedded.categories)
    with pytest.raises(ClassContrastError, match="has no split 'train'"):
        open_source(str(hf_folder), embedded.categories, split="train")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["no such class"])})
    other = datasets.Dataset.from_dict({"image": [np.zeros((4, 4, 3), np.uint8)], "label": [0]}, features=features)
    other.save_to_disk(str(tmp_path / "other"))
    with pytest.raises(ClassContrastError, match="no such class"):
        open_source(str(tmp_path / "other"), embedded.categories)
    capsys.readouterr()  # what saving printed
    assert run(["audit", str(hf_folder), "--out", str(tmp_path / "a"), "--split", "nope"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no split 'nope'" in err and "--split" in err


def test_label_sets_from_a_sequence_of_classlabels(embedded: cc.ModelBundle, tmp_path: Path) -> None:
    names = ["tabby", "Egyptian cat", "espresso"]
    features = datasets.Features({"image": datasets.Image(),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=names))})
    photo = np.asarray(cc.sample_image("chelsea").convert("RGB").resize((64, 48)))
    datasets.Dataset.from_dict({"image": [photo, photo], "labels": [[0, 1], []]}, features=features).save_to_disk(
        str(tmp_path / "ml"))
    source = open_source(str(tmp_path / "ml"), embedded.categories)
    index = embedded.categories.index
    assert [s.labels for s in source] == [tuple(sorted((index("tabby"), index("Egyptian cat")))), ()]
    np.testing.assert_array_equal(np.asarray(source.samples[0].load()), photo)  # PNG bytes: the same pixels


def test_the_hubs_parquet_layout_reads_as_the_saved_folder(embedded: cc.ModelBundle, hf_folder: Path,
                                                           tmp_path: Path) -> None:
    """The same DatasetDict written as the hub lays it out (data/{split}-0000N-of-00002.parquet, row groups of 5
    rows): every sample equal to the save_to_disk folder's (label, image, stamp), read lazily (a row group at a
    time; picklable without it), audited equal; several splits need --split, as for a saved folder."""
    import pickle

    saved = datasets.load_from_disk(str(hf_folder))
    root = tmp_path / "hub"
    (root / "data").mkdir(parents=True)
    for split, ds in saved.items():
        half = (len(ds) + 1) // 2
        for k, part in enumerate((ds.select(range(half)), ds.select(range(half, len(ds))))):
            part.to_parquet(str(root / "data" / f"{split}-{k:05d}-of-00002.parquet"), batch_size=5)
    with pytest.raises(ClassContrastError, match=r"holds several splits \(extra, test\)"):
        open_source(str(root), embedded.categories)
    got = open_source(str(root), embedded.categories, split="test")
    want = open_source(str(hf_folder), embedded.categories, split="test")
    assert len(got) == len(want) and got.labels_from == want.labels_from
    for a, b in zip(got, want, strict=True):
        assert (a.id, a.label, a.stamp()) == (b.id, b.label, b.stamp())
        assert np.array_equal(np.asarray(a.load()), np.asarray(b.load()))
    rows = got.samples[0].load.ds  # the lazy rows behind every sample
    assert len(rows.groups) >= 4 and rows._cached is not None and pickle.loads(pickle.dumps(rows))._cached is None
    kwargs = {"methods": ["gradcam"], "pairs": 2, "examples": 1, "batch_size": 8}
    a = cc.audit(embedded, got, tmp_path / "a", **kwargs)
    b = cc.audit(embedded, want, tmp_path / "b", **kwargs)
    np.testing.assert_array_equal(a.confusion, b.confusion)
    assert [(p.true, p.predicted, p.count) for p in a.pairs] == [(p.true, p.predicted, p.count) for p in b.pairs]
