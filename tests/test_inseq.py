"""The prompt's words of a text-only causal LM against inseq's contrastive attribution, where the definitions
coincide: gradient x embedding of "dog rather than cat" (one token each) is inseq's ``input_x_gradient`` of
``contrast_logits_diff`` (logit(dog) - logit(cat) = log p(dog) - log p(cat) at the same position), both with
candidates and over the vocabulary; of the vocabulary's ``probability`` contrast, inseq's ``probability``.
(inseq's Integrated Gradients starts from another baseline than the zero embedding: not the same definition.)"""

from __future__ import annotations

import pytest
import torch

import classcontrast as cc
from tests.vlm import causal_lm

inseq = pytest.importorskip("inseq")

PROMPT = "what animal is in the picture ?"


def _theirs(model: object, attributed_fn: str, **kwargs: object) -> torch.Tensor:
    """inseq's attribution of the next token "dog" to each prompt token, summed over the embedding's channels."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inseq's notice that contrastive inputs are forced to the original ones
        out = model.attribute(input_texts=PROMPT, generated_texts=PROMPT + " dog", attributed_fn=attributed_fn,
                              show_progress=False, **kwargs)
    seq = out.sequence_attributions[0]
    n = len(PROMPT.split())
    assert [t.token for t in seq.target[:n]] == PROMPT.split()
    return seq.target_attributions[:n, 0].sum(-1).double()


def test_prompt_words_equal_inseqs_contrastive_attribution() -> None:
    lm, tok = causal_lm()
    dog, cat = tok.convert_tokens_to_ids("dog"), tok.convert_tokens_to_ids("cat")
    gxi = inseq.load_model(lm, "input_x_gradient", tokenizer=tok)
    theirs = _theirs(gxi, "contrast_logits_diff", contrast_targets=PROMPT + " cat")
    net, x = cc.prompt_tokens(lm, tok, PROMPT, ["dog", "cat"])  # the two candidates
    ours = cc.explain(net, x, "gradient_x_input", cc.Foil(1), 0).maps[0, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-9)
    vocab, x = cc.prompt_tokens(lm, tok, PROMPT)  # the next token over the vocabulary
    torch.testing.assert_close(cc.explain(vocab, x, "gradient_x_input", cc.Foil(cat), dog).maps[0, 0], theirs,
                               rtol=1e-5, atol=1e-9)
    theirs = _theirs(gxi, "probability")  # p(dog) over the vocabulary
    ours = cc.explain(vocab, x, "gradient_x_input", "probability", dog).maps[0, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-9 * float(theirs.abs().max()))
