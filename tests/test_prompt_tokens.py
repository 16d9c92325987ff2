"""The prompt's words (cc.prompt_tokens): gradient x embedding, occlusion of words, with every contrast, for a
vision-language model's answers (image fixed), a text-only causal LM's candidates and a text classifier's classes
— one code path (explain on the embeddings), checked against autograd through the plain model's own embedding
layer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import classcontrast as cc

pytest.importorskip("transformers")
from tests.vlm import causal_lm, llava


def _embedding_grads(model: torch.nn.Module, runs: list[dict], score: Callable[[list[torch.Tensor]], torch.Tensor]
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Brute force: run the plain model once per keyword set in ``runs`` with its embedding layer's output made a
    leaf, and return d score(the runs' logits) / d each run's embeddings (T, D)."""
    leaves: list[torch.Tensor] = []

    def keep(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        leaves.append(out.detach().requires_grad_(True))
        return leaves[-1]

    hook = model.get_input_embeddings().register_forward_hook(keep)
    try:
        logits = [model(**run).logits[0] for run in runs]
    finally:
        hook.remove()
    grads = torch.autograd.grad(score(logits), leaves)
    return [g[0] for g in grads], [leaf.detach()[0] for leaf in leaves]


def _logp(logits: torch.Tensor, start: int, tokens: list[int]) -> torch.Tensor:
    lp = logits.log_softmax(-1)
    return sum(lp[start - 1 + i, t] for i, t in enumerate(tokens))


def test_a_causal_lms_prompt_words_for_every_contrast() -> None:
    lm, tok = causal_lm()
    prompt, answers = "what animal is in the picture ?", ["dog", "a wolf", "cat"]
    net, x = cc.prompt_tokens(lm, tok, prompt, answers)
    ids = tok(prompt)["input_ids"]
    assert net.tokens == prompt.split() and x.shape == (1, 32, len(ids))
    cand = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    runs = [{"input_ids": torch.tensor([ids + c])} for c in cand]
    with torch.no_grad():
        y = torch.stack([_logp(lm(**r).logits[0], len(ids), c) for r, c in zip(runs, cand, strict=True)])
    torch.testing.assert_close(net(x)[0], y, rtol=1e-10, atol=1e-10)
    ex = cc.explain(net, x, "gradient_x_input", ["weighted", cc.Foil(2)], 0)
    for key, scalar in (("weighted", lambda v: v[0] - v[1:].logsumexp(0)), ("foil:2", lambda v: v[0] - v[2])):
        grads, embeds = _embedding_grads(lm, runs, lambda logits, s=scalar: s(torch.stack(
            [_logp(lo, len(ids), c) for lo, c in zip(logits, cand, strict=True)])))
        want = sum((g[: len(ids)] * e[: len(ids)]).sum(-1) for g, e in zip(grads, embeds, strict=True))
        torch.testing.assert_close(ex[key].maps[0, 0], want, rtol=1e-6, atol=1e-9 * float(want.abs().max()))


def test_occlusion_of_words_is_the_drop_without_each_word() -> None:
    lm, tok = causal_lm()
    net, x = cc.prompt_tokens(lm, tok, "is there a dog ?", ["yes", "no"])
    ex = cc.explain(net, x, "occlusion", cc.Foil(1), 0, window=(32, 1))
    with torch.no_grad():
        full = net(x)[0, 0] - net(x)[0, 1]
        for i in range(x.shape[-1]):
            gone = x.clone()
            gone[..., i] = 0
            drop = full - (net(gone)[0, 0] - net(gone)[0, 1])
            torch.testing.assert_close(ex.maps[0, 0, i], 32 * drop)  # the window's 32 channels, summed


def test_a_text_classifiers_words() -> None:
    classifier, tok = causal_lm(classes=3)
    net, x = cc.prompt_tokens(classifier, tok, "is there a dog in the picture ?")
    ex = cc.explain(net, x, "gradient_x_input", cc.Foil(2), 1)
    ids = tok("is there a dog in the picture ?")["input_ids"]
    grads, embeds = _embedding_grads(classifier, [{"input_ids": torch.tensor([ids])}],
                                     lambda logits: logits[0][1] - logits[0][2])
    want = (grads[0] * embeds[0]).sum(-1)
    torch.testing.assert_close(ex.maps[0, 0], want, rtol=1e-6, atol=1e-9 * float(want.abs().max()))


def test_a_vision_language_models_prompt_words_with_the_image_fixed() -> None:
    model, processor = llava()
    bundle = cc.answers(model, processor, "is there a dog ?", ["yes", "no"])
    image = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    net, x = cc.prompt_tokens(bundle, image=image)
    assert net.tokens == ["is", "there", "a", "dog", "?"]  # the image's tokens are explained on its pixels
    with torch.no_grad():
        torch.testing.assert_close(net(x), bundle.model(image), rtol=1e-10, atol=1e-10)
    ex = cc.explain(net, x, "gradient_x_input", cc.Foil(1), 0)
    prompt = bundle.model.prompt.tolist()
    cand = [processor.tokenizer(a, add_special_tokens=False)["input_ids"] for a in ("yes", "no")]
    runs = [{"input_ids": torch.tensor([prompt + c]), "pixel_values": image} for c in cand]
    grads, embeds = _embedding_grads(model, runs, lambda logits: _logp(logits[0], len(prompt), cand[0])
                                     - _logp(logits[1], len(prompt), cand[1]))
    text = bundle.model.prompt != model.config.image_token_id
    want = sum((g[: len(prompt)][text] * e[: len(prompt)][text]).sum(-1) for g, e in zip(grads, embeds, strict=True))
    torch.testing.assert_close(ex.maps[0, 0], want, rtol=1e-6, atol=1e-9 * float(want.abs().max()))
