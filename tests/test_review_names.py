"""Second hostile review, wrong answers about *which class*: every way of naming a class resolves by the
documented rule (`classcontrast.classes`), numeric names are names, class folders keep their names, and
result keys never collide."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc
from classcontrast.classes import class_index
from classcontrast.models.bundle import Normalize

from .conftest import TinyCNN, randomize_bn


def _normal(name: str) -> str:
    return re.sub(r"\s+", " ", name.lower().replace("_", " ")).strip()


def reference(value: object, categories: list[str]) -> int | str:
    """The documented rule, written out slowly: an int is an index; a text is an exact name (unique), else a
    loose name (unique), else an integer literal as an index. Returns the index or the kind of error."""
    if isinstance(value, int):
        return value if 0 <= value < len(categories) else "range"
    assert isinstance(value, str)
    exact = [i for i in range(len(categories)) if categories[i] == value]
    if exact:
        return exact[0] if len(exact) == 1 else "ambiguous"
    loose = [i for i in range(len(categories)) if _normal(categories[i]) == _normal(value)]
    if loose:
        return loose[0] if len(loose) == 1 else "ambiguous"
    if re.fullmatch(r"\s*[0-9]+\s*", value):
        return int(value) if int(value) < len(categories) else "range"
    return "unknown"


POOL = ["0", "1", "2", "10", "11", "Cat", "cat", "CAT", "tiger cat", "tiger_cat", "Tiger  Cat", "crane", "crane",
        "dog", " 2", "02", "Cardigan", "cardigan", "x"]


def test_every_way_of_naming_a_class_resolves_as_documented() -> None:
    """Property test: class lists drawn with collisions of every kind (numeric names, case variants, space
    and underscore variants, exact duplicates); every candidate spelling — the names themselves, their case
    variants, indices as ints and as text, unknown names — resolves as the reference rule says."""
    rng = random.Random(0)
    checked = {"index": 0, "exact": 0, "loose": 0, "numeric name": 0, "ambiguous": 0, "text index": 0}
    for _ in range(300):
        categories = [rng.choice(POOL) for _ in range(rng.randint(1, 14))]
        values: list[object] = [*categories, *(c.upper() for c in categories),
                                *(c.replace(" ", "_") for c in categories), *range(-1, len(categories) + 1),
                                *(str(i) for i in range(len(categories) + 2)),
                                "nope", "Cardigan", "cardigan", "CARDIGAN"]
        for v in values:
            want = reference(v, categories)
            if isinstance(want, int):
                assert class_index(v, categories) == want, (v, categories)  # type: ignore[arg-type]
                kind = ("index" if isinstance(v, int) else "exact" if v in categories
                        else "text index" if not any(_normal(c) == _normal(str(v)) for c in categories) else "loose")
                if isinstance(v, str) and v.strip().isdigit() and v in categories:
                    kind = "numeric name"
                checked[kind] += 1
            else:
                with pytest.raises(cc.ClassContrastError) as e:
                    class_index(v, categories)  # type: ignore[arg-type]
                message = str(e.value)
                assert "\n" not in message
                if want == "ambiguous":
                    checked["ambiguous"] += 1
                    assert "ambiguous" in message
                    for i, c in enumerate(categories):  # every candidate is listed with its index
                        if c == v or (v not in categories and _normal(c) == _normal(str(v))):
                            assert f"({i})" in message
    assert all(n > 20 for n in checked.values()), checked


def test_the_bundled_models_cardigan_is_the_corgi(embedded: cc.ModelBundle, cat_x: torch.Tensor) -> None:
    corgi, sweater = embedded.categories.index("Cardigan"), embedded.categories.index("cardigan")
    assert corgi != sweater
    assert class_index("Cardigan", embedded.categories) == corgi
    assert class_index("cardigan", embedded.categories) == sweater
    with pytest.raises(cc.ClassContrastError, match=r"ambiguous.*'Cardigan' \(264\), 'cardigan' \(474\)"):
        class_index("CARDIGAN", embedded.categories)
    ex = cc.explain(embedded, cat_x, "gradcam", cc.Foil("Cardigan"), targets="tiger cat")
    assert int(ex.foils[0]) == corgi and ex.contrast == "foil:Cardigan"


def _numeric_bundle(n: int = 11) -> cc.ModelBundle:
    torch.manual_seed(0)
    names = sorted(str(i) for i in range(n))  # as class folders sort: "0", "1", "10", "2", ...
    net = randomize_bn(TinyCNN(num_classes=n)).double().eval()
    return cc.ModelBundle(net, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), names, name="numeric")


def test_numeric_names_are_names() -> None:
    bundle = _numeric_bundle()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    two = bundle.categories.index("2")
    assert two != 2  # the class called "2" is not at index 2
    ex = cc.explain(bundle, x, "gradient", [cc.Foil("10"), "weighted"], targets="2")
    assert ex.targets.tolist() == [[two], [two]]
    assert ex["foil:10"].foils.tolist() == [bundle.categories.index("10")] * 2
    by_index = cc.explain(bundle.model, x, "gradient", "weighted", targets=two)
    torch.testing.assert_close(ex["weighted"].maps, by_index.maps, rtol=0, atol=0)
    assert cc.explain(bundle, x, "gradient", "weighted", targets=2).targets.tolist() == [[2], [2]]  # an int: index


def test_zero_shot_prompts_differing_in_case_are_refused_or_kept_apart(tmp_path: Path) -> None:
    """CLIP's tokenizer lowercases: "Cat" and "cat" are one prompt to it, refused in one line (they gave two
    classes of equal probability); a model that tells them apart keeps them apart by exact names."""
    pytest.importorskip("transformers")
    from .test_zero_shot import _clip

    model, processor = _clip(tmp_path)
    with pytest.raises(cc.ClassContrastError, match="same text embedding"):
        cc.zero_shot(model, processor, ["Cat", "cat", "dog"])
    torch.manual_seed(0)
    net = randomize_bn(TinyCNN(num_classes=3)).double().eval()
    bundle = cc.ModelBundle(net, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), ["Cat", "cat", "dog"])
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    assert cc.explain(bundle, x, "gradient", "weighted", targets="cat").targets.tolist() == [[1]]
    assert cc.explain(bundle, x, "gradient", "weighted", targets="Cat").targets.tolist() == [[0]]
    with pytest.raises(cc.ClassContrastError, match="ambiguous"):
        cc.explain(bundle, x, "gradient", "weighted", targets="CAT")


def test_train_labels_numeric_class_folders_by_their_place(tmp_path: Path) -> None:
    """``train`` stores the sorted folder names as its classes; each image's label is its folder's place in
    that list (ten or more numeric folders used to shift: folder "2" labelled as class 2, i.e. "10")."""
    from classcontrast.data.specs import training_sources

    for split in ("train", "test"):
        for i in range(12):
            d = tmp_path / split / str(i)
            d.mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(d / "a.png")
    train, test, classes = training_sources(str(tmp_path))
    for source in (train, test):
        for s in source.samples:
            assert classes[s.label] == Path(s.path).parent.name  # type: ignore[index, arg-type]


def test_result_keys_never_collide() -> None:
    """A repeated contrast's suffix skips every key another result has; a contrast's own key is its own;
    every requested result is returned."""
    names = ["cat", "cat_2", "dog", "cow"]
    torch.manual_seed(0)
    net = randomize_bn(TinyCNN(num_classes=4)).double().eval()
    bundle = cc.ModelBundle(net, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), names, name="keys")
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    asked = [cc.Foil("cat"), cc.Foil("cat"), cc.Foil("cat_2"), "weighted", "weighted", cc.Foil("cat")]
    ex = cc.explain(bundle, x, "gradient", asked, targets="dog")
    assert len(ex) == len(asked)
    assert "foil:cat_2" in ex and ex["foil:cat_2"].foils.tolist() == [1]  # the class named cat_2, not a repeat
    assert ex["foil:cat"].foils.tolist() == [0] and ex["weighted"].contrast == "weighted"
    repeats = [k for k in ex if k not in ("foil:cat", "foil:cat_2", "weighted")]
    assert len(repeats) == 3 and len(set(ex)) == 6
    for k in repeats:
        assert ex[k].contrast == k
