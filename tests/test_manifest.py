"""The command line's manifest (what it knows before torch is imported) is generated from the registrations — the
methods' declared options and the model families' — and kept current; the model zoo is a lookup among the
registered families (issue 39: "Model families as adapters", "A thin command line")."""

from __future__ import annotations

import pytest
from tools.manifest import FAMILIES_TARGET, TARGET, families_text, manifest_text

import classcontrast as cc
from classcontrast.cli import manifest
from classcontrast.methods import declared_options
from classcontrast.models.registry import FAMILIES, Family, FamilyOption, register_family


def test_the_manifest_is_current() -> None:
    assert TARGET.read_text() == manifest_text(), "stale: run python tools/manifest.py"
    assert FAMILIES_TARGET.read_text(encoding="utf-8") == families_text(), "stale: run python tools/manifest.py"


def test_every_option_is_declared_once_with_its_help() -> None:
    """Every method option has a type and a help on its method; the command line's flags come from them."""
    for name in cc.METHODS:
        for decl in declared_options(name):
            assert decl.help, (name, decl.name)
            assert decl.kind in {"int", "float", "bool", "str", "sizes"}, (name, decl.name, decl.kind)
            assert decl.name in manifest.METHOD_OPTIONS and name in manifest.METHOD_OPTIONS[decl.name]["help"]
    assert set(manifest.METHODS) == set(cc.METHODS) and tuple(cc.CONTRASTS) == manifest.CONTRASTS
    assert [f["spec"] for f in manifest.FAMILIES] == [f.spec for f in FAMILIES]


def test_load_model_is_a_lookup_among_registered_families() -> None:
    """A family registered by an adapter is loaded by name, with its own options; another family's option is one
    line naming its owner."""
    made = []

    def load(rest: str, weights: object, num_classes: int | None, colour: str | None = None) -> cc.ModelBundle:
        made.append((rest, weights, num_classes, colour))
        return cc.load_model("efficientnet_lite0", weights=None)

    family = register_family(Family(name="test-toy", prefix="toy", spec="toy:<name>", summary="a test's", load=load,
                                    options=(FamilyOption("colour", str, "a test option"),)))
    try:
        assert cc.load_model("toy:red", weights="none", colour="blue").name == "efficientnet_lite0"
        assert made == [("red", None, None, "blue")]
        with pytest.raises(cc.ClassContrastError, match="imgsz is an option of yolo"):
            cc.load_model("toy:red", imgsz=320)
        with pytest.raises(cc.ClassContrastError, match="colour is an option of toy:<name> models, not of"):
            cc.load_model("efficientnet_lite0", colour="red")
        with pytest.raises(cc.ClassContrastError, match="unknown model 'toi:red'"):
            cc.load_model("toi:red")
    finally:
        FAMILIES.remove(family)
