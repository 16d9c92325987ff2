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

import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ..errors import ClassContrastError
from .bundle import ModelBundle, Normalize
from .hf import HFPreprocess


class Answers(nn.Module):
    """Images (B, C, H, W) in the model's input space -> (B, K) summed log-probabilities of K candidate token
    sequences after the prompt (``candidates`` None: (B, V) next-token logits).

    The image tower runs once per image; its features are handed to the model for each of the image's K
    sequences (``mm_encoder_outputs``), so the model itself places them, builds its masks (PaliGemma's
    bidirectional prefix) and positions (Qwen2-VL's multimodal RoPE). Models whose processor flattens an image
    into a patch sequence (Qwen2-VL) take the image on its grid: the module flattens it exactly as the processor
    does, so a map over ``x`` is a map over the image's own pixels."""

    def __init__(self, model: nn.Module, processor: Any, text: str, candidates: Sequence[Sequence[int]] | None,
                 pad: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.text = text
        self.candidates = [list(c) for c in candidates] if candidates is not None else None
        self.pad = pad
        self.vlm_config = getattr(model, "config", None)
        self.after = 1 if getattr(self.vlm_config, "model_type", "") == "paligemma" else None  # answer: suffix
        self._texts: dict[tuple[int, int], dict[str, Tensor]] = {}
        # the text's own token ids, before the processor expands the image (`explained`)
        self.plain = torch.tensor(processor.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        self.register_buffer("prompt", self.encoded(*size)["input_ids"], persistent=False)  # (L,) image tokens in
        inner = getattr(model, "model", None)
        tower = next((t for t in (getattr(model, "vision_tower", None), *(getattr(inner, name, None) for name in (
            "vision_tower", "visual", "vision_model"))) if t is not None), None)
        # the image tower's config: the attention methods switch and record its attention only (not the LM's)
        self.config = getattr(tower, "config", None) or self.vlm_config
        self.patch_size = getattr(self.config, "patch_size", None)  # the Vision Transformer methods' patch grid
        self.handed = "mm_encoder_outputs" in inspect.signature(model.forward).parameters

    def encoded(self, h: int, w: int) -> dict[str, Tensor]:
        """The processor's per-token tensors (``input_ids`` and, where it makes them, token types) of the prompt
        for an image of h × w pixels (the number of image tokens may depend on the size)."""
        if (h, w) not in self._texts:
            out = self.processor(text=self.text, images=Image.new("RGB", (w, h)), return_tensors="pt")
            length = out["input_ids"].shape[-1]
            self._texts[(h, w)] = {k: v[0] for k, v in out.items() if k != "attention_mask"
                                   and isinstance(v, Tensor) and v.ndim == 2 and v.shape[-1] == length}
        return self._texts[(h, w)]

    def pixels(self, x: Tensor) -> dict[str, Tensor]:
        """The model's image inputs for images x (B, C, H, W): the pixel values themselves, or the processor's
        patch sequence (``pixel_values`` (B·N, C·T·p²) and ``image_grid_thw``) for a patch-flattening processor."""
        images = self.processor.image_processor
        if hasattr(images, "split_images"):
            return _tiles(images, x)
        if not hasattr(images, "patchify"):
            return {"pixel_values": x}
        p, m, t = images.patch_size, images.merge_size, images.temporal_patch_size
        if x.shape[-2] % (p * m) or x.shape[-1] % (p * m):
            raise ClassContrastError(f"images of {x.shape[-2]} × {x.shape[-1]} pixels: this model takes sides that "
                                     f"are multiples of {p * m} (use the bundle's transform)")
        flat, gh, gw = images.patchify(x, patch_size=p, merge_size=m, temporal_patch_size=t)
        grid = torch.tensor([[1, gh, gw]] * len(x), dtype=torch.long, device=x.device)
        return {"pixel_values": flat.reshape(-1, flat.shape[-1]), "image_grid_thw": grid}

    def tokens_on_grid(self, x: Tensor) -> tuple[Callable[[Tensor], Tensor], int, int] | None:
        """For a patch-sequence tower (Qwen2-VL): (tokens (..., B·N, D) -> (..., B, N, D) in raster order, grid
        height, grid width) — the sequence runs over merge blocks row by row, within each its patches row by row;
        for a tiling processor (Idefics3) the tiles' tokens on the image's grid (`_tile_tokens`); None for a tower
        on (B, tokens, D) of whole images."""
        images = self.processor.image_processor
        if hasattr(images, "split_images"):
            return _tile_tokens(images.max_image_size["longest_edge"], self.patch_size, x)
        if not hasattr(images, "patchify"):
            return None
        tower = getattr(getattr(self.model, "model", None), "visual", None)
        if hasattr(tower, "permute_input_for_window_attn"):  # Qwen2.5-VL's window attention
            raise ClassContrastError(f"{type(self.model).__name__}'s image tower reorders its tokens into attention "
                                     "windows inside its blocks; the Vision Transformer methods do not follow that "
                                     "order: use gradient, integrated_gradients or occlusion")
        p, m, b = images.patch_size, images.merge_size, x.shape[0]
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        r, c = torch.arange(gh, device=x.device)[:, None], torch.arange(gw, device=x.device)[None]
        order = (((r // m) * (gw // m) + c // m) * m * m + (r % m) * m + c % m).reshape(-1)

        def arrange(t: Tensor) -> Tensor:
            return t.reshape(*t.shape[:-2], b, gh * gw, t.shape[-1])[..., order, :]

        return arrange, gh, gw

    def forward(self, x: Tensor, embeddings: Tensor | None = None) -> Tensor:
        """(B, K) scores of images x (B, C, H, W); with ``embeddings`` (E, D, L), the scores of one image x
        (1, C, H, W) with the prompt's L explained tokens (`explained`) embedded as given, (E, K)."""
        n = x.shape[0]
        b, k = n if embeddings is None else embeddings.shape[0], len(self.candidates or [None])
        prompt = {key: v.to(x.device) for key, v in self.encoded(*x.shape[-2:]).items()}
        length = len(prompt["input_ids"])
        if self.candidates is None:
            tokens = {key: v[None].expand(b, -1) for key, v in prompt.items()}
            mask = torch.ones_like(tokens["input_ids"])
        else:
            answers, mask = _padded(self.candidates, length, self.pad, x.device)
            tokens = {key: torch.cat([v[None].expand(k, -1), answers if key == "input_ids" else
                                      torch.full_like(answers, self.after if self.after is not None else int(v[-1]))],
                                     1).repeat(b, 1) for key, v in prompt.items()}
            mask = mask.repeat(b, 1)
        pixels, reps = self.pixels(x), k * b // n
        if self.handed:  # the image tower once per image, its features handed to each of the image's sequences
            image = self.model.get_image_features(**pixels, **self._feature_options(), return_dict=True)
            image.pooler_output = _each(image.pooler_output, n, reps)
            images = {"mm_encoder_outputs": {"image": image}}
            images.update({key: _each(v, n, reps) for key, v in pixels.items() if key != "pixel_values"})
        else:
            images = {key: _each(v, n, reps) for key, v in pixels.items()}
        with ExitStack() as stack:
            if embeddings is not None:
                places = self.explained(prompt["input_ids"]).nonzero()[:, 0]
                stack.enter_context(_embedded(self.model.get_input_embeddings(), places,
                                              embeddings.transpose(1, 2).repeat_interleave(k, 0)))
            logits = self.model(**tokens, attention_mask=mask, **images).logits
        if self.candidates is None:
            return logits[:, -1]
        return _summed(logits, self.candidates, length, b)

    def explained(self, ids: Tensor) -> Tensor:
        """(L,) bool: the prompt's tokens that are words — not the image's tokens, not any other special token, and
        not a token the processor added when it expanded the image (Idefics3's tile tags): any id that occurs more
        often in the expanded prompt than in the text's own tokens."""
        found, counts = ids.cpu().unique(return_counts=True)
        added = [int(i) for i, c in zip(found, counts, strict=True) if int(c) > int((self.plain == i).sum())]
        other = torch.tensor(sorted({*self.processor.tokenizer.all_special_ids, *added}), dtype=torch.long,
                             device=ids.device)
        return ~torch.isin(ids, other) & (ids != getattr(self.vlm_config, "image_token_id", -1))

    def _feature_options(self) -> dict[str, Any]:
        """LLaVA's choice of the tower's layer and tokens, from its config, where its image features take one."""
        wanted = inspect.signature(self.model.get_image_features).parameters
        return {key: getattr(self.vlm_config, key) for key in ("vision_feature_layer", "vision_feature_select_strategy")
                if key in wanted and hasattr(self.vlm_config, key)}


def _tile_tokens(t: int, p: int, x: Tensor) -> tuple[Callable[[Tensor], Tensor], int, int]:
    """Idefics3's tower tokens (..., B·F, g², D) — F frames per image: its rows × cols tiles row by row, then the
    whole-image view; g = t / p patches a side — laid out as the tiles' patches on the image's grid (..., B,
    (rows·g)·(cols·g), D) in raster order; the whole view (the same pixels at a coarser scale) is left out."""
    b, (h, w), g = x.shape[0], x.shape[-2:], t // p
    rows, cols = h // t, w // t
    frames = 1 if (h, w) == (t, t) else rows * cols + 1

    def arrange(tokens: Tensor) -> Tensor:
        lead, d = tokens.shape[:-3], tokens.shape[-1]
        v = tokens.reshape(*lead, b, frames, g * g, d)[..., : rows * cols, :, :]
        v = v.reshape(*lead, b, rows, cols, g, g, d).transpose(-4, -3)  # (..., b, rows, g, cols, g, d)
        return v.reshape(*lead, b, rows * g * cols * g, d)

    return arrange, rows * g, cols * g


def _tiles(images: Any, x: Tensor) -> dict[str, Tensor]:
    """Idefics3/SmolVLM's image inputs for images x (B, C, H, W) (the processor's resized image, sides in
    multiples of its tile size t): the t × t tiles row by row, cut exactly, then the whole image resized to t × t by
    the processor's own resize (linear, so it commutes with the normalisation; clipped to the pixel range after each
    pass as the processor's 8-bit pixels are), each tile's pixels all valid."""
    t = images.max_image_size["longest_edge"]
    h, w = x.shape[-2:]
    if h % t or w % t:
        raise ClassContrastError(f"images of {h} × {w} pixels: this model takes sides that are multiples of {t} "
                                 "(use the bundle's transform)")
    frames = x[:, None]
    if (h, w) != (t, t):
        from transformers.image_processing_utils import SizeDict

        tiles = x.unfold(2, t, t).unfold(3, t, t).permute(0, 2, 3, 1, 4, 5).reshape(len(x), -1, x.shape[1], t, t)
        # the processor resizes 8-bit pixels in two passes (width, then height), each clipped to [0, 1] (here in
        # normalised units): the same passes, equal up to rounding
        mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device)[:, None, None]
                     for v in (images.image_mean, images.image_std))
        whole = x
        for size in (SizeDict(height=h, width=t), SizeDict(height=t, width=t)):
            whole = images.resize(whole, size, resample=images.resample)
            whole = torch.maximum(torch.minimum(whole, (1 - mean) / std), -mean / std)
        frames = torch.cat([tiles, whole[:, None]], 1)
    mask = torch.ones(*frames.shape[:2], t, t, dtype=torch.bool, device=x.device)
    return {"pixel_values": frames, "pixel_attention_mask": mask}


@contextmanager
def _embedded(layer: nn.Module, places: Tensor, values: Tensor) -> Iterator[None]:
    """While open, ``layer`` (the model's input embeddings) returns ``values`` (B, L, D) at the sequences'
    positions ``places`` — in the calling thread only; the hook is removed on leaving."""
    owner = threading.get_ident()

    def swap(_m: nn.Module, _i: Any, out: Tensor) -> Tensor | None:
        if threading.get_ident() != owner:
            return None
        out = out.clone()
        out[:, places] = values.to(out.dtype)
        return out

    handle = layer.register_forward_hook(swap)
    try:
        yield
    finally:
        handle.remove()


def _each(value: Any, b: int, k: int) -> Any:
    """Each of B images' share of ``value`` (a tensor whose first dimension is B or B·N, or a sequence of B
    tensors) repeated K times in place: image-major, as the sequences."""
    if isinstance(value, (list, tuple)):
        return [v for v in value for _ in range(k)]
    if k == 1:
        return value
    return value.reshape(b, -1, *value.shape[1:]).repeat_interleave(k, 0).reshape(-1, *value.shape[1:])


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
    preprocess = (TilesPreprocess if hasattr(image_processor, "split_images") else PatchesPreprocess
                  if hasattr(image_processor, "patchify") else HFPreprocess)(image_processor)
    size = getattr(image_processor, "crop_size", None) or getattr(image_processor, "size", None) or {}
    h, w = size.get("height", 224), size.get("width", 224)
    device = next(model.parameters()).device
    net = Answers(model.eval(), processor, text, candidate_tokens(tokenizer, candidates), pad_id(tokenizer),
                  tuple(preprocess(Image.new("RGB", (w, h))).shape[-2:])).to(device)
    net.eval()
    if candidates is None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(model.config.get_text_config().vocab_size)))
        categories = [str(v) if v is not None else f"token {i}" for i, v in enumerate(vocab)]
    else:
        categories = list(candidates)
    return ModelBundle(net, preprocess,
                       Normalize(image_processor.image_mean, image_processor.image_std), categories,
                       name or f"answers of {type(model).__name__}",
                       info={"prompt": prompt, "text": text, "candidates": candidates})


class PatchesPreprocess(HFPreprocess):
    """PIL image -> [0, 1] (C, H, W) for a processor that flattens images into patch sequences (Qwen2-VL): its own
    resizing, the patch sequence laid back on the image's grid (the inverse of its ``patchify``). Images keep
    their own sizes (``crop`` None: one per batch)."""

    crop = None

    def __call__(self, image: Image.Image) -> Tensor:
        out = self.processor(images=image.convert("RGB"), do_normalize=False, return_tensors="pt")
        (_, gh, gw), p = out["image_grid_thw"][0].tolist(), self.processor.patch_size
        m, t = self.processor.merge_size, self.processor.temporal_patch_size
        flat = out["pixel_values"].float().reshape(gh // m, gw // m, m, m, -1, t, p, p)[:, :, :, :, :, 0]
        return flat.permute(4, 0, 2, 5, 1, 3, 6).reshape(-1, gh * p, gw * p)


class TilesPreprocess(HFPreprocess):
    """PIL image -> [0, 1] (C, H, W) for a processor that splits images into tiles (Idefics3, SmolVLM): its own
    resizing, the tiles laid back side by side (the whole-image view is made from them by the model's module).
    Images keep their own sizes (``crop`` None: one per batch)."""

    crop = None

    def __call__(self, image: Image.Image) -> Tensor:
        out = self.processor(images=image.convert("RGB"), do_normalize=False, return_row_col_info=True,
                             return_tensors="pt")
        frames, rows, cols = out["pixel_values"][0].float(), out["rows"][0][0], out["cols"][0][0]
        if rows == 0:
            return frames[0]
        t = frames.shape[-1]
        return frames[:-1].reshape(rows, cols, -1, t, t).permute(2, 0, 3, 1, 4).reshape(-1, rows * t, cols * t)


def _prompt(processor: Any, prompt: str, template: str | bool | None) -> str:
    """The text the processor gets: the prompt as written when it holds the image token or ``template`` is False,
    else in the chat template (the processor's, or ``template``) with the image first and the answer to come."""
    token = getattr(processor, "image_token", None) or "<image>"
    if not isinstance(prompt, str) or not prompt.strip():
        raise ClassContrastError(f"the prompt is empty: give the question (prompt=..., --prompt), got {prompt!r}")
    if prompt.count(token) > 1:
        raise ClassContrastError(f"the prompt holds the image token {token!r} {prompt.count(token)} times: a question "
                                 "is about one image; keep one (or none: the image is put first)")
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
