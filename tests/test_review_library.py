"""Second hostile review, the library: multi-label CSVs with one label per line, one-output models, zero-shot
folders without a tokenizer, float foils, models sharing one Hugging Face config, all-zero maps nobody asked
for, empty regions, detection foils equal to their targets, memory-bounded Integrated Gradients."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import classcontrast as cc
from classcontrast.explorer.notebook import explanations_html
from classcontrast.models.bundle import Normalize

from .conftest import TinyCNN, randomize_bn

# -- 5: a multi-label CSV listing an image on several lines --------------------------------------------------

def test_a_csv_listing_an_image_on_several_lines_merges_its_labels(tmp_path: Path) -> None:
    from classcontrast.data.sources import csv_source

    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "labels.csv").write_text("path,labels\na.png,dog\nb.png,cat\na.png,frisbee\na.png,dog;ball\n")
    source = csv_source(tmp_path / "labels.csv", ["ball", "cat", "dog", "frisbee"])
    assert [(s.id, s.labels) for s in source.samples] == [("a.png", (0, 2, 3)), ("b.png", (1,))]


# -- 6: a one-output model (a binary classifier) ------------------------------------------------------------

def test_a_one_output_model_is_a_sigmoid_decision_with_every_contrast_defined() -> None:
    """Its output y is class 1 against class 0 (logits [0, y]): every contrast's map equals autograd of the
    scalar it names, computed by hand from y; none is NaN, zero or an error."""
    torch.manual_seed(0)
    net = randomize_bn(TinyCNN(num_classes=1)).double().eval()
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # centre the logit so that both decisions occur
        net.fc.bias -= net(x).median()
    xg = x.clone().requires_grad_(True)
    y = net(xg)[:, 0]
    assert (y > 0).any() and (y < 0).any()  # both decisions among the images
    top = (y > 0).long().detach()
    sign = torch.where(top == 1, 1.0, -1.0).double()
    scalars = {"weighted": sign * y, "max": sign * y, "mean": sign * y, "original": y * top,
               "probability": torch.sigmoid(sign * y)}
    for contrast, scalar in scalars.items():
        want = torch.autograd.grad(scalar.sum(), xg, retain_graph=True)[0].sum(1)
        ex = cc.explain(net, x, "gradient", contrast)
        assert ex.targets[:, 0].tolist() == top.tolist()
        assert torch.isfinite(ex.maps).all()
        torch.testing.assert_close(ex.maps[:, 0], want, rtol=1e-10, atol=1e-12)
    foil = cc.explain(net, x, "gradient", cc.Foil(0), targets=1).maps[:, 0]
    torch.testing.assert_close(foil, torch.autograd.grad(y.sum(), xg)[0].sum(1), rtol=1e-10, atol=1e-12)
    sig = cc.explain(net, x, "gradient", ["probability", "weighted"], targets=1, head="sigmoid")
    torch.testing.assert_close(sig["probability"].target_probabilities[:, 0], torch.sigmoid(y).detach())
    assert sig["weighted"].head == "softmax"  # softmax([0, y]) is sigma(y): one reading


def test_a_one_output_bundle_names_both_decisions_and_the_explorer_shows_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = randomize_bn(TinyCNN(num_classes=1)).double().eval()
    bundle = cc.ModelBundle(net, lambda im: im, Normalize([0.0] * 3, [1.0] * 3), ["dog"], name="binary")
    assert bundle.categories == ["not dog", "dog"]
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ex = cc.explain(bundle, x, "gradcam", ["weighted", cc.Foil("not dog")], targets="dog")
    assert torch.isfinite(ex["weighted"].maps).all() and ex["weighted"].maps.abs().sum() > 0
    page = cc.write_explorer(tmp_path / "p.html", bundle, x, ["gradcam"])
    assert '"not dog"' in page.read_text()
    assert "<" in explanations_html(ex["weighted"])  # the notebook view


# -- 7: zero-shot folders without their tokenizer, float foils --------------------------------------------

def test_a_zero_shot_folder_without_its_tokenizer_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from classcontrast.models.zero_shot import load_zero_shot

    from .test_zero_shot import _clip

    model, processor = _clip(tmp_path)
    folder = tmp_path / "no-tokenizer"
    model.save_pretrained(folder)
    processor.image_processor.save_pretrained(folder)
    with pytest.raises(cc.ClassContrastError, match="no tokenizer files"):
        load_zero_shot(f"hf:{folder}", ["cat", "dog"])
    with pytest.raises(cc.ClassContrastError, match="needs the model's tokenizer"):
        cc.zero_shot(model, processor.image_processor, ["cat", "dog"])


def test_a_float_foil_is_refused_in_every_form() -> None:
    for foil in (2.7, torch.tensor(2.7), torch.tensor([1.0, 2.0]), np.float32(1.0), [1, 2.5], torch.tensor(True)):
        with pytest.raises(cc.ClassContrastError, match="Foil needs"):
            cc.Foil(foil)  # type: ignore[arg-type]


# -- 8: models sharing one Hugging Face config ---------------------------------------------------------------

def test_models_sharing_one_config_are_left_as_found_by_concurrent_rollouts() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                 image_size=16, patch_size=8, num_labels=3)
    torch.manual_seed(0)
    models = [transformers.ViTForImageClassification(cfg).eval() for _ in range(3)]
    assert all(m.config is cfg for m in models)
    before = cfg._attn_implementation
    x = torch.randn(1, 3, 16, 16)
    errors: list[BaseException] = []

    def work(m: nn.Module) -> None:
        try:
            for _ in range(15):
                cc.explain(m, x, "attention_rollout", "weighted")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cfg._attn_implementation == before


# -- 15: Integrated Gradients' memory does not grow with the number of images -------------------------------

def test_integrated_gradients_runs_bounded_batches_and_the_maps_do_not_change(tiny: nn.Module,
                                                                             tiny_x: torch.Tensor) -> None:
    rows: list[int] = []
    handle = tiny.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        bounded = cc.explain(tiny, tiny_x, "integrated_gradients", ["weighted", "max"], steps=32)
    finally:
        handle.remove()
    assert max(rows) <= 16 and sum(rows) == len(tiny_x) * (32 + 1)  # + the clean pass for the targets
    one_pass = cc.explain(tiny, tiny_x, "integrated_gradients", ["weighted", "max"], steps=32,
                          internal_batch_size=len(tiny_x) * 32)
    for k in ("weighted", "max"):
        torch.testing.assert_close(bounded[k].maps, one_pass[k].maps, rtol=1e-10, atol=1e-12)
    with pytest.raises(cc.ClassContrastError, match="internal_batch_size"):
        cc.explain(tiny, tiny_x, "integrated_gradients", internal_batch_size=2.5)


# -- 16: a large 16-bit image is read without a full-size float copy ----------------------------------------

def test_a_16_bit_image_is_read_exactly_without_a_full_size_float_copy(tmp_path: Path) -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(2000, 1500), dtype=np.uint16)
    values[0, :4] = [0, 257, 65535, 65534]
    Image.fromarray(values).save(tmp_path / "deep.png")
    tracemalloc.start()
    try:
        img = cc.load_image(tmp_path / "deep.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    got = np.asarray(img)
    want = (values.astype(np.uint64) * 255 // 65535).astype(np.uint8)  # floor(v · 255 / 65535)
    assert got.shape == (2000, 1500, 3) and (got == want[..., None]).all()
    assert got[0, :4, 0].tolist() == [0, 1, 255, 254]
    assert peak < 8 * values.size, peak  # less than one float64 copy (8 bytes a pixel): bands of rows
