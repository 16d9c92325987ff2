r"""Candidate answers of a vision-language model as classes: "why did it answer yes rather than no?".

`answers` turns a Hugging Face vision-language model (LLaVA-style: ``LlavaForConditionalGeneration`` and the
models whose processor expands an image token in the prompt) and its processor into a
[`ModelBundle`][classcontrast.models.bundle.ModelBundle] whose module maps images (the processor's pixel
values) to logits over the candidate answers: each candidate's summed token log-probability given the image and
the prompt, teacher-forced,

$$y_a = \sum_{i=1}^{|a|} \log p\big(a_i \mid \text{image}, \text{prompt}, a_{<i}\big),$$

with the candidate's tokens as the tokenizer makes them without special tokens, after the prompt's. All
candidates of an image are scored in one batched forward pass. So every contrast is defined and exact:
``Foil("no")`` is $\log p(\text{yes}) - \log p(\text{no})$, ``weighted`` the candidate against all the others,
``probability`` its probability among the candidates.

With ``candidates=None`` the classes are instead the whole vocabulary at the next token (the logits of the
position after the prompt; the categories are the token strings): every contrast over the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ..errors import ClassContrastError
from .bundle import ModelBundle, Normalize
from .hf import HFPreprocess


class Answers(nn.Module):
    """Pixel values (B, C, H, W) -> (B, K) summed log-probabilities of K candidate token sequences after the
    prompt (``candidates`` None: (B, V) next-token logits)."""

    def __init__(self, model: nn.Module, prompt: Tensor, candidates: Sequence[Sequence[int]] | None, pad: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("prompt", prompt, persistent=False)  # (L,) the prompt's ids, image tokens expanded
        self.candidates = [list(c) for c in candidates] if candidates is not None else None
        self.pad = pad
        self.vlm_config = getattr(model, "config", None)
        tower = getattr(model, "vision_tower", None) or getattr(getattr(model, "model", None), "vision_tower", None)
        # the image tower's config: the attention methods switch and record its attention only (not the LM's)
        self.config = getattr(tower, "config", None) or self.vlm_config
        self.patch_size = getattr(self.config, "patch_size", None)  # the Vision Transformer methods' patch grid

    def forward(self, pixel_values: Tensor) -> Tensor:
        b = pixel_values.shape[0]
        embeds = self.prompt_embeddings(pixel_values)  # (B, T, D), None where the model takes no embeddings
        if embeds is None:
            return self._repeated(pixel_values)
        if self.candidates is None:
            ones = torch.ones(b, embeds.shape[1], dtype=torch.long, device=embeds.device)
            return self.model(inputs_embeds=embeds, attention_mask=ones).logits[:, -1]
        return candidate_scores(self.model, embeds, self.candidates, self.pad)

    def image_features(self, pixel_values: Tensor) -> Tensor | None:
        """(B, N, D) the image tower's features as the language model receives them (LLaVA's
        ``get_image_features``), once per image; None for a model that does not offer them."""
        token = getattr(self.vlm_config, "image_token_id", None)
        features = getattr(self.model, "get_image_features", None)
        if features is None or token is None:
            return None
        out = features(pixel_values=pixel_values, vision_feature_layer=self.vlm_config.vision_feature_layer,
                       vision_feature_select_strategy=self.vlm_config.vision_feature_select_strategy)
        pooled = getattr(out, "pooler_output", out)
        return torch.stack(list(pooled)) if isinstance(pooled, (list, tuple)) else pooled

    def prompt_embeddings(self, pixel_values: Tensor) -> Tensor | None:
        """(B, T, D) the prompt's input embeddings with each image's features at the image tokens; None where the
        model offers no image features (then the images are repeated for each sequence)."""
        image = self.image_features(pixel_values)
        if image is None:
            return None
        places = self.prompt == self.vlm_config.image_token_id
        if int(places.sum()) != image.shape[1]:
            raise ClassContrastError(f"the prompt holds {int(places.sum())} image tokens but the image makes "
                                     f"{image.shape[1]} features")
        own = self.model.get_input_embeddings()(self.prompt)
        full = own[None].expand(len(image), -1, -1).to(image.dtype).clone()
        full[:, places] = image
        return full

    def _repeated(self, pixel_values: Tensor) -> Tensor:
        """The scores of a model without image features: every sequence with its image, by token ids."""
        b, device = pixel_values.shape[0], pixel_values.device
        length = len(self.prompt)
        if self.candidates is None:
            ids = self.prompt[None].expand(b, -1)
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixel_values)
            return out.logits[:, -1]
        k = len(self.candidates)
        answers, mask = _padded(self.candidates, length, self.pad, device)
        ids = torch.cat([self.prompt[None].expand(k, -1), answers], 1)
        logits = self.model(input_ids=ids.repeat(b, 1), attention_mask=mask.repeat(b, 1),
                            pixel_values=pixel_values.repeat_interleave(k, 0)).logits
        return _summed(logits, self.candidates, length, b)


def candidate_scores(model: nn.Module, prompt: Tensor, candidates: Sequence[Sequence[int]], pad: int) -> Tensor:
    r"""(B, K) each candidate's summed token log-probability after each of B prompts given as input embeddings
    (B, T, D): $\sum_i \log p(a_i \mid \text{prompt}, a_{<i})$, teacher-forced; the K sequences of a prompt
    right-padded into one batched forward pass."""
    b, length, k = prompt.shape[0], prompt.shape[1], len(candidates)
    ids, mask = _padded(candidates, length, pad, prompt.device)
    answers = model.get_input_embeddings()(ids).to(prompt.dtype)  # (K, longest, D)
    embeds = torch.cat([prompt.repeat_interleave(k, 0), answers.repeat(b, 1, 1)], 1)  # (B·K, T + longest, D)
    logits = model(inputs_embeds=embeds, attention_mask=mask.repeat(b, 1)).logits
    return _summed(logits, candidates, length, b)


def candidate_tokens(tokenizer: Any, candidates: Sequence[str] | None) -> list[list[int]] | None:
    """Each candidate's token ids as the tokenizer makes them without special tokens (None for None); a candidate
    without tokens, or two with the same ones, is a one-line error."""
    if candidates is None:
        return None
    tokens = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in candidates]
    empty = [c for c, t in zip(candidates, tokens, strict=True) if len(t) == 0]
    if empty:
        raise ClassContrastError(f"candidate {empty[0]!r} has no tokens")
    if len({tuple(t) for t in tokens}) != len(tokens):
        raise ClassContrastError("two candidates make the same tokens; give answers the tokenizer tells apart")
    return tokens


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id (0 when it has none: padded positions are masked out anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _padded(candidates: Sequence[Sequence[int]], length: int, pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(the candidates' ids right-padded (K, longest), the attention mask of prompt + candidate (K, length +
    longest)): the prompt's positions are the same in every sequence."""
    longest = max(len(c) for c in candidates)
    ids = torch.full((len(candidates), longest), pad, dtype=torch.long, device=device)
    mask = torch.zeros(len(candidates), length + longest, dtype=torch.long, device=device)
    for j, c in enumerate(candidates):
        ids[j, : len(c)] = torch.tensor(list(c), device=device)
        mask[j, : length + len(c)] = 1
    return ids, mask


def _summed(logits: Tensor, candidates: Sequence[Sequence[int]], length: int, b: int) -> Tensor:
    """(B, K) from the logits of B·K sequences (image-major): token i of candidate j is predicted at position
    length + i − 1."""
    k, scores = len(candidates), []
    for j, c in enumerate(candidates):
        rows = logits[j::k, length - 1 : length - 1 + len(c)].log_softmax(-1)  # (B, |c|, V)
        taken = torch.tensor(list(c), device=logits.device)[None, :, None].expand(b, -1, 1)
        scores.append(rows.gather(2, taken)[..., 0].sum(1))
    return torch.stack(scores, 1)


def answers(model: Any, processor: Any, prompt: str, candidates: Sequence[str] | None,
            template: str | bool | None = None, name: str | None = None) -> ModelBundle:
    """A vision-language model choosing among ``candidates`` as a classifier over them (see the module docstring).

    Args:
        model: a Hugging Face vision-language model taking ``input_ids``, ``attention_mask`` and ``pixel_values``
            (LLaVA-style: the processor expands its image token in the prompt).
        processor: its processor (``image_processor`` and ``tokenizer``).
        prompt: the question. Put into the processor's chat template with the image first when it has one;
            a prompt already holding the image token, or ``template=False``, is used exactly as written.
        candidates: the answers (``["yes", "no"]``, ``["a dog", "a wolf"]``); None: the next token, over the
            whole vocabulary.
        template: a chat template (Jinja) to use instead of the processor's; False: none.
    """
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is None or image_processor is None:
        raise ClassContrastError("answers() needs the model's processor, with a tokenizer and an image processor")
    if candidates is not None:
        candidates = [str(c) for c in candidates]
        if len(candidates) < 2 or len(set(candidates)) != len(candidates):
            raise ClassContrastError(f"answers() needs at least two distinct candidates, got {candidates}")
    text = _prompt(processor, prompt, template)
    size = getattr(image_processor, "crop_size", None) or getattr(image_processor, "size", None) or {}
    h, w = size.get("height", size.get("shortest_edge", 224)), size.get("width", size.get("shortest_edge", 224))
    encoded = processor(text=text, images=Image.new("RGB", (w, h)), return_tensors="pt")
    prompt_ids = encoded["input_ids"][0]
    device = next(model.parameters()).device
    net = Answers(model.eval(), prompt_ids.to(device), candidate_tokens(tokenizer, candidates), pad_id(tokenizer))
    net.eval()
    net.tokenizer = tokenizer  # names the prompt's tokens (`classcontrast.models.prompt.prompt_tokens`)
    if candidates is None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(model.config.get_text_config().vocab_size)))
        categories = [str(v) if v is not None else f"token {i}" for i, v in enumerate(vocab)]
    else:
        categories = list(candidates)
    return ModelBundle(net, HFPreprocess(image_processor),
                       Normalize(image_processor.image_mean, image_processor.image_std), categories,
                       name or f"answers of {type(model).__name__}",
                       info={"prompt": prompt, "text": text, "candidates": candidates})


def _prompt(processor: Any, prompt: str, template: str | bool | None) -> str:
    """The text the processor gets: the prompt as written when it holds the image token or ``template`` is False,
    else in the chat template (the processor's, or ``template``) with the image first and the answer to come."""
    token = getattr(processor, "image_token", None) or "<image>"
    if template is False or token in prompt:
        return prompt
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    chat = template if isinstance(template, str) else getattr(processor, "chat_template", None)
    if chat is None:
        return f"{token}\n{prompt}"  # no chat template: the image token, then the question
    return processor.apply_chat_template(messages, chat_template=chat, add_generation_prompt=True)


def load_answers(spec: str, prompt: str, candidates: Sequence[str] | None, trust_remote_code: bool = False,
                 template: str | bool | None = None) -> ModelBundle:
    """``hf:<folder or hub id>`` of a vision-language model, as a classifier over ``candidates`` for ``prompt``:
    the folder's model (``AutoModelForImageTextToText``) and processor (``AutoProcessor``), with the same offline
    and remote-code rules as every ``hf:`` model."""
    from .zero_shot import load_text_image

    def load(tf: Any, folder: str, offline: bool) -> tuple[Any, Any]:
        model = tf.AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                               local_files_only=offline)
        return model, tf.AutoProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                       local_files_only=offline)

    model, processor = load_text_image(spec, trust_remote_code, load, "--prompt needs a vision-language")
    return answers(model.eval(), processor, prompt, candidates, template, name=f"{spec} (answers)")


__all__ = ["Answers", "answers", "candidate_scores", "candidate_tokens", "load_answers", "pad_id"]
