"""A vision-language model's candidate answers as classes (cc.answers): each candidate's summed token
log-probability given the image and the prompt, against brute force (one forward per candidate); every contrast's
map against autograd; the processor's pixel values; the prompt's chat template; the Vision Transformer methods on
the image tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import classcontrast as cc

pytest.importorskip("transformers")
from tests.vlm import assert_contrast_maps, llava

CANDIDATES = ["yes", "no", "a wolf"]


@pytest.fixture(scope="module")
def vlm() -> tuple:
    return llava()


def _brute(model: torch.nn.Module, prompt: torch.Tensor, tokens: list[list[int]], x: torch.Tensor) -> torch.Tensor:
    """(B, K) one plain forward per image and candidate, no padding: the candidate's log-probabilities summed."""
    out = torch.zeros(len(x), len(tokens), dtype=x.dtype)
    for i in range(len(x)):
        for j, c in enumerate(tokens):
            ids = torch.cat([prompt, torch.tensor(c)])[None]
            logp = model(input_ids=ids, pixel_values=x[i : i + 1]).logits[0].log_softmax(-1)
            out[i, j] = sum(logp[len(prompt) - 1 + n, tok] for n, tok in enumerate(c))
    return out


def test_candidates_are_their_summed_token_log_probabilities(vlm: tuple) -> None:
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    assert bundle.categories == CANDIDATES and bundle.info["text"] == "<image>\nis there a dog ?"
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prompt = bundle.model.prompt
    assert int((prompt == processor.tokenizer.convert_tokens_to_ids("<image>")).sum()) == 16  # 4 x 4 patches
    tokens = [processor.tokenizer(c, add_special_tokens=False)["input_ids"] for c in CANDIDATES]
    assert tokens[2] == [processor.tokenizer.convert_tokens_to_ids(w) for w in ("a", "wolf")]
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), _brute(model, prompt, tokens, x), rtol=1e-10, atol=1e-10)
        vocab = cc.answers(model, processor, "is there a dog ?", None)
        want = model(input_ids=prompt[None].expand(2, -1), pixel_values=x).logits[:, -1]
        torch.testing.assert_close(vocab.model(x), want, rtol=1e-10, atol=1e-10)
    assert vocab.categories[processor.tokenizer.convert_tokens_to_ids("yes")] == "yes"


def test_models_without_handed_features_repeat_the_image(vlm: tuple) -> None:
    """A model that takes no precomputed image features (``mm_encoder_outputs``) gets every sequence with its
    image: the same scores and next-token logits."""
    model, processor = vlm
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    for candidates in (CANDIDATES, None):
        bundle = cc.answers(model, processor, "is there a dog ?", candidates)
        with torch.no_grad():
            want = bundle.model(x)
            bundle.model.handed = False
            torch.testing.assert_close(bundle.model(x), want, rtol=1e-10, atol=1e-10)



def test_every_contrast_is_exact_against_autograd(vlm: tuple) -> None:
    """Foil("no") is log p(yes) - log p(no); weighted the candidate against all the others; probability its
    probability among the candidates: each map equals autograd of that scalar through the plain model."""
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tokens = [processor.tokenizer(c, add_special_tokens=False)["input_ids"] for c in CANDIDATES]
    ex = cc.explain(bundle, x, "gradient", ["original", "weighted", "probability", cc.Foil("no")], "yes",
                    keep_channels=True)
    assert_contrast_maps(ex, x, lambda v: _brute(model, bundle.model.prompt, tokens, v))


def test_the_processors_pixel_values_and_its_prompt(vlm: tuple) -> None:
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", ["yes", "no"])
    image = Image.fromarray((np.random.default_rng(2).random((40, 50, 3)) * 255).astype(np.uint8))
    theirs = processor(text="<image> is", images=image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(bundle.transform(image), theirs.to(bundle.transform(image).dtype), rtol=0, atol=1e-5)
    written = cc.answers(model, processor, "USER: <image> is there a dog ? ASSISTANT:", ["yes", "no"])
    assert written.info["text"] == "USER: <image> is there a dog ? ASSISTANT:"  # a prompt with the image token
    template = "{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> " \
               "{% else %}{{ c['text'] }}{% endif %}{% endfor %} ASSISTANT:{% endfor %}"
    chat = cc.answers(model, processor, "is there a dog ?", ["yes", "no"], template=template)
    assert chat.info["text"] == "USER: <image> is there a dog ? ASSISTANT:"
    torch.testing.assert_close(chat.model.prompt, written.model.prompt)
    with pytest.raises(cc.ClassContrastError, match="at least two distinct candidates"):
        cc.answers(model, processor, "is there a dog ?", ["yes", "yes"])
    with pytest.raises(cc.ClassContrastError, match="needs the model's processor"):
        cc.answers(model, processor.tokenizer, "is there a dog ?", ["yes", "no"])


def test_the_image_methods_on_the_vision_tower(vlm: tuple) -> None:
    """ViT GradCAM and attention rollout find the image tower's blocks and attention (not the language model's);
    occlusion scores every contrast from the same perturbed forwards."""
    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for method in ("vit_gradcam", "attention_rollout"):
        ex = cc.explain(bundle, x, method, ["weighted", cc.Foil("no")], "yes")
        assert ex["weighted"].maps.shape == (2, 1, 32, 32) and ex["weighted"].maps.abs().sum() > 0
        assert method == "attention_rollout" or "vision_tower" in ex["weighted"].layer
    occluded = cc.explain(bundle, x, "occlusion", cc.Foil("no"), "yes", window=16, stride=16).maps
    with torch.no_grad():
        clean = bundle.model(x)
        covered = x.clone()
        covered[..., :16, :16] = 0
        drop = (clean[:, 0] - clean[:, 1]) - (bundle.model(covered)[:, 0] - bundle.model(covered)[:, 1])
    torch.testing.assert_close(occluded[:, 0, 0, 0], 3 * drop)  # the window over all 3 channels, summed


def test_the_command_line_asks_a_question(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """`explain photo.png --model hf:DIR --prompt ... --answers ... --target yes --foil no`: the saved maps are the
    bundle's own."""
    from tests.test_cli import run

    model, processor = llava(dtype=torch.float32)
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    cc.sample_image("astronaut").resize((40, 40)).save(tmp_path / "a.png")
    assert run(["explain", str(tmp_path / "a.png"), "--model", f"hf:{tmp_path / 'vlm'}", "--prompt",
                "is there a dog ?", "--answers", "yes", "no", "a wolf", "--target", "yes", "--foil", "no",
                "--method", "gradient", "--contrast", "weighted", "--out", str(tmp_path / "why.png"),
                "--save-maps", str(tmp_path / "m.npz")]) == 0
    printed = capsys.readouterr().out
    assert "question: is there a dog ?" in printed and (tmp_path / "why.png").stat().st_size > 0
    # every candidate's probability is printed, as the page says (only the target's was)
    line = next(v for v in printed.splitlines() if v.startswith("a.png: "))
    assert [part.rsplit(" ", 1)[0] for part in line.removeprefix("a.png: ").split(", ")] == ["yes", "no", "a wolf"]
    bundle = cc.models.answers.load_answers(f"hf:{tmp_path / 'vlm'}", "is there a dog ?", ["yes", "no", "a wolf"])
    x = bundle.transform(cc.load_image(tmp_path / "a.png"))[None]
    want = cc.explain(bundle, x, "gradient", cc.Foil("no"), "yes").maps
    with np.load(tmp_path / "m.npz") as z:
        scale = float(want.abs().max())
        np.testing.assert_allclose(z["maps/gradient/foil:no"], want.numpy(), rtol=1e-4, atol=1e-6 * scale)
    # the prompt's words under each map: gradient x embedding of the same contrast and target, printed
    net, e = cc.prompt_tokens(bundle, image=x)
    words = cc.explain(net, e, "gradient_x_input", cc.Foil(1), 0).maps[0, 0]
    line = next(v for v in printed.replace("\n", " ").split("words (") if v.startswith("gradient · rather than no"))
    shown = [float(v) for v in line.split("):")[1].split()[1::2][: len(net.tokens)]]
    np.testing.assert_allclose(shown, words.numpy(), rtol=2e-3, atol=1e-6)
    assert run(["explain", str(tmp_path / "a.png"), "--model", f"hf:{tmp_path / 'vlm'}", "--answers", "yes",
                "no"]) == 2
    assert "--answers needs --prompt" in capsys.readouterr().err


def test_the_audit_asks_a_question_over_answer_folders(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit FOLDERS --prompt ... --answers yes no`: the class folders are named after the answers; the confusion
    counts equal the bundle's own answers; another prompt with the same tokens in another order is another model
    (its cached rows are not reused)."""
    import json

    from classcontrast.evaluation.runner import model_fingerprint
    from classcontrast.models.answers import load_answers
    from tests.test_cli import run

    model, processor = llava(dtype=torch.float32)
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    for answer, photos in (("yes", ["chelsea", "astronaut"]), ("no", ["coffee", "rocket"])):
        (tmp_path / "q" / answer).mkdir(parents=True)
        for p in photos:
            cc.sample_image(p).resize((40, 40)).save(tmp_path / "q" / answer / f"{p}.png")
    bundle = load_answers(f"hf:{tmp_path / 'vlm'}", "is there a dog ?", ["yes", "no"])
    wrong = 0
    for answer in ("yes", "no"):
        for f in sorted((tmp_path / "q" / answer).iterdir()):
            with torch.no_grad():
                y = bundle.model(bundle.transform(cc.load_image(f))[None])
            wrong += bundle.categories[int(y.argmax())] != answer
    assert run(["audit", str(tmp_path / "q"), "--model", f"hf:{tmp_path / 'vlm'}", "--prompt", "is there a dog ?",
                "--answers", "yes", "no", "--method", "gradient", "--out", str(tmp_path / "aud")]) == 0
    found = json.loads((tmp_path / "aud" / "audit.json").read_text())
    assert found["classes"] == ["yes", "no"] and found["n"] == 4 and found["accuracy"] == (4 - wrong) / 4
    other = load_answers(f"hf:{tmp_path / 'vlm'}", "there is a dog ?", ["yes", "no"])
    assert sorted(other.model.prompt.tolist()) == sorted(bundle.model.prompt.tolist())
    assert model_fingerprint(other.model) != model_fingerprint(bundle.model)
    assert run(["audit", str(tmp_path / "q"), "--model", f"hf:{tmp_path / 'vlm'}", "--answers", "yes", "no"]) == 2
    assert "--answers needs --prompt" in capsys.readouterr().err


def test_the_explorer_colours_the_prompts_words(vlm: tuple, tmp_path) -> None:
    """The explorer's entry of a vision-language bundle holds the prompt's words and, per method, target and
    contrast, their attributions: equal to cc.prompt_tokens explained with the same target and contrast; in a
    real browser the strip follows the contrast chosen."""
    import warnings

    from tools.browser import Browser

    from classcontrast.explorer.compute import explorer_data
    from classcontrast.explorer.page import write_page

    model, processor = vlm
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    data = explorer_data(bundle, x, ["gradient"], foils=[1])
    (e,) = data["entries"]
    net, emb = cc.prompt_tokens(bundle, image=x)
    assert e["words"]["tokens"] == net.tokens == ["is", "there", "a", "dog", "?"]
    keys = e["methods"]["gradient"]["contrasts"]
    for j, t in enumerate(e["targets"]):
        for c, key in enumerate(keys):
            contrast = cc.Foil(int(key.split(":")[1])) if key.startswith("foil:") else key
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cc.ClassContrastWarning)  # t rather than t: zero, as on the page
                want = cc.explain(net, emb, "gradient_x_input", contrast, t).maps[0, 0]
            np.testing.assert_allclose(e["words"]["values"]["gradient"][j][c], want.numpy(), rtol=1e-5,
                                       atol=1e-7 * float(want.abs().max()) + 1e-12)
    page = write_page(data, tmp_path / "vlm.html")
    with Browser() as b:
        b.open(page.resolve().as_uri())
        b.settled()
        shown = b.eval("[...document.querySelectorAll('.cc-word')].map((w) => w.textContent).join(' ')")
        assert shown == "is there a dog ?"
        other = next(t for t in e["targets"] if t != e["default"]["target"])
        for key in ("weighted", f"foil:{other}"):
            b.click(f'button[data-control="contrast"][data-value="{key}"]')
            b.settled()
            values = b.eval("[...document.querySelectorAll('.cc-word')].map((w) => Number(w.dataset.value))")
            j, c = e["targets"].index(e["default"]["target"]), keys.index(key)
            np.testing.assert_allclose(values, e["words"]["values"]["gradient"][j][c], rtol=1e-6)
