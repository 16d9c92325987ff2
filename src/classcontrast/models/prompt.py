r"""The prompt's words: which tokens of the question moved the answer, with every contrast.

`prompt_tokens` makes the prompt's token embeddings the input: a module mapping embeddings (B, D, L) — the
prompt's L tokens as a 1-D signal of D channels — to the same logits as the model's (a vision-language model's
candidate answers with its image fixed, a text-only causal LM's candidate continuations, a text classifier's
classes), and the prompt's own embeddings as ``x``. `classcontrast.engine.explain` then explains the tokens
exactly as it explains pixels, one code path:

* ``gradient_x_input``: gradient × embedding, $\sum_d e_{\ell d}\, \partial O / \partial e_{\ell d}$ per token;
* ``integrated_gradients``: from the zero embedding to the token's (``baseline=0``);
* ``occlusion`` with ``window=(D, 1)``: each word replaced by the zero embedding, the drop of the objective;

for ``Foil("no")`` "which words made it say yes rather than no", for ``weighted`` "... rather than the other
answers". Maps are (B, K, L) (summed over the D channels), one value per prompt token (`PromptTokens.tokens`
names them; a VLM's image tokens are not among them — the image is explained on its pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from .answers import Answers, candidate_scores, candidate_tokens, pad_id
from .bundle import ModelBundle


class PromptTokens(nn.Module):
    """Prompt token embeddings (B, D, L) -> logits (B, K): the candidates' summed log-probabilities, or a
    classifier's class logits; the rest of the sequence (a VLM's image features, special tokens kept) fixed."""

    def __init__(self, model: nn.Module, ids: Tensor, places: Tensor, candidates: Sequence[Sequence[int]] | None,
                 pad: int, fixed: Tensor, tokens: list[str]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("ids", ids, persistent=False)  # (T,) the whole prompt
        self.register_buffer("places", places, persistent=False)  # (T,) bool: the explained tokens
        self.register_buffer("fixed", fixed, persistent=False)  # (T, D) every position's embedding (image features)
        self.candidates = [list(c) for c in candidates] if candidates is not None else None
        self.pad = pad
        self.tokens = tokens  # the explained tokens' strings, in order

    def forward(self, e: Tensor) -> Tensor:
        full = self.fixed[None].expand(e.shape[0], -1, -1).to(e.dtype).clone()
        full[:, self.places] = e.transpose(1, 2)
        if self.candidates is None:  # a classifier's class logits; a causal LM's next-token logits (the vocabulary)
            mask = torch.ones(full.shape[:2], dtype=torch.long, device=full.device)
            logits = self.model(inputs_embeds=full, attention_mask=mask).logits
            return logits[:, -1] if logits.ndim == 3 else logits
        return candidate_scores(self.model, full, self.candidates, self.pad)


class ImagePromptTokens(nn.Module):
    """A vision-language model's prompt token embeddings (B, D, L) -> its candidates' scores (B, K) with the image
    fixed: the model's own forward, its input embeddings replaced at the prompt's words."""

    def __init__(self, answers: Answers, image: Tensor, tokens: list[str]) -> None:
        super().__init__()
        self.answers = answers
        self.register_buffer("image", image, persistent=False)  # (1, C, H, W)
        self.tokens = tokens  # the explained tokens' strings, in order

    def forward(self, e: Tensor) -> Tensor:
        return self.answers(self.image.to(e.dtype), embeddings=e)


def prompt_tokens(model: Any, tokenizer: Any = None, prompt: str | None = None,
                  candidates: Sequence[str] | None = None, image: Tensor | None = None
                  ) -> tuple[nn.Module, Tensor]:
    """(module, x): the prompt's token embeddings as an input to explain (see the module docstring).

    * A vision-language bundle from `classcontrast.models.answers.answers`: ``prompt_tokens(bundle,
      image=x)`` (x: one image's pixel values (1, C, H, W)), its candidates and prompt;
    * a text-only causal LM (``AutoModelForCausalLM``): ``prompt_tokens(lm, tokenizer, prompt, candidates)``
      (``candidates=None``: the next token over the whole vocabulary, its classes the token ids);
    * a text classifier (``AutoModelForSequenceClassification``): ``prompt_tokens(classifier, tokenizer, text)``.

    ``x`` is (1, D, L): the prompt's own embeddings of its L explained tokens (`PromptTokens.tokens`)."""
    if isinstance(model, ModelBundle) and isinstance(model.model, Answers):
        net = model.model
        if image is None or image.ndim != 4 or image.shape[0] != 1:
            raise ClassContrastError("prompt_tokens(bundle, image=x): x is one image's pixel values (1, C, H, W)")
        ids = net.encoded(*image.shape[-2:])["input_ids"].to(image.device)
        places = net.explained(ids)
        if not bool(places.any()):
            raise ClassContrastError("the prompt has no words to explain (only the processor's special tokens)")
        with torch.no_grad():
            own = net.model.get_input_embeddings()(ids[places])
        words = net.processor.tokenizer.convert_ids_to_tokens(ids[places].tolist())
        return ImagePromptTokens(net, image.detach(), [str(w) for w in words]).eval(), own.T[None].clone()
    if tokenizer is None or prompt is None:
        raise ClassContrastError("prompt_tokens(model, tokenizer, prompt, candidates): give the tokenizer and the "
                                 "prompt (or a bundle from cc.answers and image=x)")
    ids = torch.tensor(tokenizer(prompt)["input_ids"], dtype=torch.long)
    special = set(getattr(tokenizer, "all_special_ids", []))
    places = torch.tensor([int(i) not in special for i in ids])
    device = next(model.parameters()).device
    with torch.no_grad():
        fixed = model.get_input_embeddings()(ids.to(device))
    return _made(model, ids.to(device), places.to(device), candidate_tokens(tokenizer, candidates), pad_id(tokenizer),
                 fixed, tokenizer)


def _made(model: nn.Module, ids: Tensor, places: Tensor, candidates: Any, pad: int, fixed: Tensor,
          tokenizer: Any) -> tuple[PromptTokens, Tensor]:
    if not bool(places.any()):
        raise ClassContrastError("the prompt has no words to explain (it is empty, or only the tokenizer's special "
                                 "tokens)")
    chosen = ids[places].tolist()
    words = tokenizer.convert_ids_to_tokens(chosen) if tokenizer is not None else [str(i) for i in chosen]
    net = PromptTokens(model, ids, places, candidates, pad, fixed.detach(), [str(w) for w in words]).eval()
    return net, fixed.detach()[places].T[None].clone()


__all__ = ["ImagePromptTokens", "PromptTokens", "prompt_tokens"]
