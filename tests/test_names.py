"""Classes, methods, contrasts and layers named by the user: class names wherever a ModelBundle knows
them, results keyed by the foil's class, and "did you mean" for every unknown name."""

from __future__ import annotations

import warnings

import pytest
import torch

import classcontrast as cc
from classcontrast.models.bundle import Normalize

from .conftest import TinyCNN, randomize_bn

NAMES = ["tiger cat", "Egyptian cat", "tabby cat", "coffee mug", "espresso", "golden retriever", "Persian cat"]


@pytest.fixture
def named() -> cc.ModelBundle:
    torch.manual_seed(0)
    net = randomize_bn(TinyCNN(num_classes=len(NAMES))).double().eval()
    return cc.ModelBundle(net, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), list(NAMES), name="tiny")


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def test_foil_by_name_equals_foil_by_index(named: cc.ModelBundle, x: torch.Tensor) -> None:
    by_name = cc.explain(named, x, "gradcam", [cc.Foil("Egyptian cat"), "weighted"], targets="tiger cat")
    by_index = cc.explain(named.model, x, "gradcam", [cc.Foil(1), "weighted"], targets=0)
    assert list(by_name) == ["foil:Egyptian cat", "weighted"]
    assert list(by_index) == ["foil:1", "weighted"]  # without class names: the index
    torch.testing.assert_close(by_name["foil:Egyptian cat"].maps, by_index["foil:1"].maps, rtol=0, atol=0)
    assert by_name["foil"] is by_name["foil:Egyptian cat"]  # the call's only foil
    assert by_name.targets.tolist() == [[0], [0]]
    # the foil's map is the difference of the two classes' maps (a brute-force reference)
    t = cc.explain(named.model, x, "gradcam", "original", targets=0).maps
    s = cc.explain(named.model, x, "gradcam", "original", targets=1).maps
    torch.testing.assert_close(by_name["foil"].maps, t - s, rtol=1e-10, atol=1e-12)


def test_two_foils_keyed_by_class_and_names_in_any_spelling(named: cc.ModelBundle, x: torch.Tensor) -> None:
    ex = cc.explain(named, x, "gradient", [cc.Foil("egyptian_cat"), cc.Foil("Coffee  Mug")],
                    targets=[["tiger cat", "espresso"], [2, "golden retriever"]])
    assert list(ex) == ["foil:Egyptian cat", "foil:coffee mug"]
    assert ex.targets.tolist() == [[0, 4], [2, 5]]
    with pytest.raises(KeyError, match="foil:Egyptian cat"):
        ex["foil"]  # two foils: the key must name the class
    per_image = cc.explain(named, x, "gradient", [cc.Foil(["espresso", "tabby cat"]), cc.Foil([1, 3])])
    assert list(per_image) == ["foil", "foil_2"]  # one foil per image: no single class to name


def test_names_need_a_bundle_and_unknown_names_suggest(named: cc.ModelBundle, x: torch.Tensor) -> None:
    with pytest.raises(cc.ClassContrastError, match="is a name, but the model has no class names"):
        cc.explain(named.model, x, "gradient", cc.Foil("Egyptian cat"))
    with pytest.raises(cc.ClassContrastError, match="is a name, but the model has no class names"):
        cc.explain(named.model, x, "gradient", targets="tiger cat")
    with pytest.raises(cc.ClassContrastError, match=r"unknown class 'egyptian kat'.*did you mean 'Egyptian cat'"):
        cc.explain(named, x, "gradient", cc.Foil("egyptian kat"))
    with pytest.raises(cc.ClassContrastError, match=r"unknown class 'cat'.*did you mean 'tiger cat', 'Egyptian cat', "
                                                     r"'tabby cat'"):
        cc.explain(named, x, "gradient", targets="cat")
    with pytest.raises(cc.ClassContrastError, match="out of range"):
        cc.explain(named, x, "gradient", cc.Foil(len(NAMES)))
    with pytest.raises(cc.ClassContrastError, match="class index or a class name"):
        cc.Foil(1.0)  # type: ignore[arg-type]


def test_unknown_method_contrast_layer_suggest(named: cc.ModelBundle, x: torch.Tensor) -> None:
    with pytest.raises(cc.ClassContrastError, match=r"unknown method 'gradcm'; did you mean 'gradcam'"):
        cc.explain(named, x, "gradcm")
    with pytest.raises(cc.ClassContrastError, match=r"unknown contrast 'weigted'; did you mean 'weighted'"):
        cc.explain(named, x, "gradcam", "weigted")
    with pytest.raises(cc.ClassContrastError, match=r"unknown layer 'features.7' for TinyCNN; did you "
                                                     r"mean 'features\.[0-5]'.*the last spatial layers: .*features\.5"):
        cc.explain(named, x, "gradcam", layer="features.7")


def test_readme_style_call_is_warning_free(named: cc.ModelBundle, x: torch.Tensor) -> None:
    """TopK(3) may contain the foil: the foil's own row is "t rather than t" (zero) and is said once;
    a foil outside the top-3 (explicit targets) gives no warning at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cc.explain(named, x, "gradcam", ["original", "weighted", cc.Foil("espresso")],
                   targets=[["tiger cat", "Egyptian cat"]] * 2)


def test_cli_column_titles_and_npz_keys_name_the_foil() -> None:
    from classcontrast.cli.explain_out import column_title, npz_key

    assert column_title("gradcam", "foil:Egyptian cat") == "gradcam · rather than Egyptian cat"
    assert column_title("gradcam", "weighted", qualified=False) == "weighted"
    assert npz_key("gradcam", "foil:Egyptian cat") == "maps/gradcam/foil:Egyptian cat"
    key = npz_key("gradcam", "foil:caf\u00e9/\u732b")
    assert key.isascii() and key.isprintable() and key.count("/") == 2


def test_a_method_is_found_by_any_of_its_spellings(named: cc.ModelBundle, x: torch.Tensor) -> None:
    """One style for the registered names, every other spelling (case, hyphens, the class name, ``++``, the peers'
    names) the same method: its maps equal the registered name's, and the result names it by that name."""
    import re

    from classcontrast.methods import METHODS, spellings
    from classcontrast.text import spelling

    for name, cls in METHODS.items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name), name
        for text in (name, cls.__name__, *vars(cls).get("aliases", ())):  # no spelling of one method names another
            assert spellings()[spelling(text)] == name, (text, name)
    for spelled, name in [("Grad-CAM++", "gradcam_plus_plus"), ("GradCAMPlusPlus", "gradcam_plus_plus"),
                          ("gradcampp", "gradcam_plus_plus"), ("Saliency", "gradient"),
                          ("InputXGradient", "gradient_x_input"), ("Integrated Gradients", "integrated_gradients"),
                          ("LayerGradCam", "gradcam")]:
        ex, ref = cc.explain(named, x, spelled, "weighted"), cc.explain(named, x, name, "weighted")
        assert ex.method == name and torch.equal(ex.maps, ref.maps), spelled
    with pytest.raises(cc.ClassContrastError, match=r"unknown method 'gradcam\+'"):
        cc.explain(named, x, "gradcam+")


def test_the_command_line_takes_the_same_spellings() -> None:
    from classcontrast.cli import manifest
    from classcontrast.cli.options import expand_multi_options, method_names
    from classcontrast.methods import spellings

    assert spellings() == manifest.METHOD_SPELLINGS
    assert method_names(["Grad-CAM++,saliency", "LayerCAM"]) == ["gradcam_plus_plus", "gradient", "layercam"]
    assert expand_multi_options(["explain", "--method", "gradcam", "Grad-CAM++", "a.jpg"]) == [
        "explain", "--method", "gradcam", "--method", "Grad-CAM++", "a.jpg"]
    with pytest.raises(cc.ClassContrastError, match="unknown method 'gradcm'; did you mean 'gradcam'"):
        method_names(["gradcm"])


def test_dir_of_the_package_is_its_api() -> None:
    names = dir(cc)
    assert not {"Any", "importlib", "_EXPORTS", "_SUBMODULES", "TYPE_CHECKING", "annotations"} & set(names)
    assert set(cc.__all__) <= set(names) and {"explain", "Explanation", "methods", "__version__"} <= set(names)
    assert all(getattr(cc, n) is not None for n in names)
    assert "eval-mode classifier" not in (cc.ModelBundle.__doc__ or "")
