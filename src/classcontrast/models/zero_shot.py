r"""Zero-shot classifiers: the classes are text prompts the user writes.

`zero_shot` turns a Hugging Face CLIP-style model (``CLIPModel``, ``SiglipModel``) and its processor or
tokenizer into a [`ModelBundle`][classcontrast.models.bundle.ModelBundle] whose model maps images to logits
over the prompts,

$$y_c = s \cdot \cos\big(f(x),\ g(\text{prompt}_c)\big) + b,$$

with the model's own logit scale $s$ (and SigLIP's bias $b$); the text embeddings $g$ are computed once,
without gradient. A softmax over the prompts decides for CLIP — the paper's setting, with classes chosen
at run time — and each prompt is its own sigmoid decision for SigLIP (``head="sigmoid"``). Only the image
tower is part of the module, so `vit_gradcam` and `attention_rollout` find its blocks and GradCAM its
layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from ..text import count
from .bundle import ModelBundle, Normalize
from .hf import HFPreprocess


class ZeroShot(nn.Module):
    """Images -> logits (B, P) over P prompts: scale · cos(image embedding, prompt embedding) + bias.

    ``vision`` is a Hugging Face image tower (``pixel_values=`` in, ``pooler_output`` out, then
    ``projection``) or, with ``embeds=True``, a module mapping images to their embedding (open_clip's
    ``visual``)."""

    def __init__(self, vision: nn.Module, projection: nn.Module | None, prompts: Tensor, scale: Tensor,
                 bias: Tensor | None, patch_size: int | None = None, embeds: bool = False) -> None:
        super().__init__()
        self.vision = vision
        self.embeds = embeds
        self.projection = projection
        self.register_buffer("prompts", prompts)  # (P, D), unit length
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias if bias is not None else torch.zeros((), dtype=prompts.dtype))
        self.patch_size = patch_size  # for the Vision Transformer methods' patch grid
        self.config = getattr(vision, "config", None)  # the image tower's: attention capture, patch size

    def forward(self, pixel_values: Tensor) -> Tensor:
        if self.embeds:
            features = self.vision(pixel_values)
        else:
            pooled = self.vision(pixel_values=pixel_values).pooler_output
            features = self.projection(pooled) if self.projection is not None else pooled
        features = features / features.norm(dim=-1, keepdim=True)
        return self.scale * features @ self.prompts.T + self.bias


def zero_shot(model: Any, processor: Any, classes: Sequence[str], template: str = "a photo of a {}.",
              name: str | None = None) -> ModelBundle:
    """A zero-shot classifier over ``classes`` as a ModelBundle (categories = the class names).

    Args:
        model: a Hugging Face ``CLIPModel`` or ``SiglipModel`` (or any model with ``vision_model``,
            ``get_text_features`` and ``logit_scale``), a ModelBundle holding one (``hf:<folder>``), or an
            open_clip model (``visual``, ``encode_text``, ``logit_scale``; SigLIP ones with ``logit_bias``).
        processor: its processor (``CLIPProcessor``: tokenizer and image processor) or its tokenizer
            alone (then CLIP's 224-pixel preprocessing and OpenAI's mean and std are used); for open_clip,
            ``open_clip.get_tokenizer(name)`` (the image preprocessing is the model's ``preprocess_cfg``).
        classes: the class names, put into ``template`` (``"{}"`` marks the name) as the prompts.
        template: the prompt for each class: every ``{}`` becomes the class name (other braces are text).
    """
    if isinstance(model, ModelBundle):
        name = name or model.name
        model = model.model
    if not classes or len(set(classes)) != len(classes):
        raise ClassContrastError("zero_shot needs distinct class names (--classes)")
    if "{}" not in template:
        raise ClassContrastError(f"the prompt template {template!r} needs '{{}}' where the class name goes")
    prompts = [template.replace("{}", c) for c in classes]
    if _is_open_clip(model):
        return _open_clip(model, processor, list(classes), template, name)
    vision = getattr(model, "vision_model", None)
    if vision is None or not hasattr(model, "get_text_features"):
        raise ClassContrastError(f"{type(model).__name__} is not a CLIP-style model (no vision_model / text tower)")
    tokenizer = getattr(processor, "tokenizer", processor)
    image_processor = getattr(processor, "image_processor", None)
    if not callable(getattr(tokenizer, "convert_tokens_to_ids", None)):
        raise ClassContrastError(f"zero_shot needs the model's tokenizer (or a processor holding one), got "
                                 f"{type(tokenizer).__name__}: save it with the model (tokenizer.save_pretrained("
                                 "folder)); see the zero-shot page for building one offline")
    sigmoid = getattr(model, "logit_bias", None) is not None  # SigLIP: one sigmoid per prompt
    config = getattr(model, "config", None)
    context = getattr(getattr(config, "text_config", None), "max_position_embeddings", None)
    _check_lengths(prompts, [len(ids) for ids in tokenizer(prompts)["input_ids"]], context)
    if sigmoid:  # SigLIP was trained on prompts padded to the text tower's full length
        length = getattr(getattr(config, "text_config", None), "max_position_embeddings", 64)
        tokens = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        tokens = {"input_ids": tokens["input_ids"]}  # SigLIP's text tower reads no attention mask
    else:
        tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    device = next(model.parameters()).device
    with torch.no_grad():
        text = model.get_text_features(**{k: v.to(device) for k, v in tokens.items()})
        text = getattr(text, "pooler_output", text)
        text = _distinct(text / text.norm(dim=-1, keepdim=True), prompts)
        scale = model.logit_scale.detach().exp().clone()
        bias = model.logit_bias.detach().clone() if sigmoid else None
    patch = getattr(getattr(config, "vision_config", None), "patch_size", None)
    net = ZeroShot(vision, getattr(model, "visual_projection", None), text, scale, bias, patch).eval()
    if image_processor is not None:
        preprocess: Any = HFPreprocess(image_processor)
        mean = image_processor.image_mean
        std = image_processor.image_std
    else:
        from .preprocess import Preprocess

        preprocess, mean, std = Preprocess(224, 224, "bicubic"), _CLIP_MEAN, _CLIP_STD
    return ModelBundle(net, preprocess, Normalize(mean, std), list(classes),
                       name or f"zero-shot {type(model).__name__}", info={"prompts": prompts},
                       head="sigmoid" if sigmoid else "softmax")


def _is_open_clip(model: Any) -> bool:
    return isinstance(getattr(model, "visual", None), nn.Module) and hasattr(model, "encode_text") \
        and hasattr(model, "logit_scale")


def _open_clip(model: Any, tokenizer: Any, classes: list[str], template: str, name: str | None) -> ModelBundle:
    """`zero_shot` for an open_clip model: its tokenizer gives token tensors, ``visual`` embeds images."""
    from .preprocess import Preprocess

    prompts = [template.replace("{}", c) for c in classes]
    device = next(model.parameters()).device
    if not callable(tokenizer):
        raise ClassContrastError("an open_clip model needs its tokenizer: open_clip.get_tokenizer(model_name)")
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer / SimpleTokenizer: the lengths
    encode = getattr(inner, "encode", None) or getattr(tokenizer, "encode", None)
    if callable(encode):
        context = getattr(model, "context_length", None) or getattr(tokenizer, "context_length", None)
        _check_lengths(prompts, [len(encode(p)) + 2 for p in prompts], context)  # + start and end tokens
    with torch.no_grad():
        text = model.encode_text(tokenizer(prompts).to(device))
        text = _distinct(text / text.norm(dim=-1, keepdim=True), prompts)
        scale = model.logit_scale.detach().exp().clone()
        bias = getattr(model, "logit_bias", None)
        bias = bias.detach().clone() if bias is not None else None
    visual = model.visual
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    size = cfg.get("size", getattr(visual, "image_size", 224))
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    patch = getattr(visual, "patch_size", None)
    net = ZeroShot(visual, None, text, scale, bias, patch, embeds=True).eval()
    interpolation = cfg.get("interpolation", "bicubic")
    preprocess = Preprocess(h, w, interpolation) if h == w else Preprocess((h, w), None, interpolation)
    normalize = Normalize(cfg.get("mean", _CLIP_MEAN), cfg.get("std", _CLIP_STD))
    return ModelBundle(net, preprocess, normalize, classes, name or f"zero-shot open_clip {type(model).__name__}",
                       info={"prompts": prompts}, head="sigmoid" if bias is not None else "softmax")


def _check_lengths(prompts: Sequence[str], lengths: Sequence[int], context: int | None) -> None:
    """A prompt longer than the text model's context is a one-line error (it would be cut, or fail inside)."""
    if context is None:
        return
    for prompt, n in zip(prompts, lengths, strict=True):
        if n > int(context):
            raise ClassContrastError(f"the prompt {prompt!r} has {count(n, 'token')}, more than the text model's "
                                     "context of "
                                     f"{int(context)}: shorten the class name or the template")


def _distinct(text: Tensor, prompts: Sequence[str]) -> Tensor:
    """The prompts' unit embeddings (P, D); prompts the text tower cannot tell apart (a tokenizer that maps
    every word to one unknown token gives every class the probability 1/P) are a one-line error."""
    if len(prompts) > 1:
        same = (text @ text.T).triu(1) > 1 - 1e-6
        if bool(same.any()):
            i, j = (int(v) for v in same.nonzero()[0])
            raise ClassContrastError(f"the prompts {prompts[i]!r} and {prompts[j]!r} have the same text embedding: "
                                     "the tokenizer does not tell them apart (is it the model's own?)")
    return text


_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_zero_shot(spec: str, classes: Sequence[str], template: str = "a photo of a {}.",
                   trust_remote_code: bool = False) -> ModelBundle:
    """``hf:<folder or hub id>`` of a CLIP-style model, as a zero-shot classifier over ``classes``: the
    folder's model (``AutoModel``) and processor (``AutoProcessor``, or its tokenizer), with the same
    offline and remote-code rules as every ``hf:`` model."""

    def load(tf: Any, folder: str, offline: bool) -> tuple[Any, Any]:
        model = tf.AutoModel.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=offline)
        try:
            processor: Any = tf.AutoProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                               local_files_only=offline)
        except (OSError, ValueError, KeyError, TypeError):
            processor = tf.AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                                         local_files_only=offline)
        return model, processor

    model, processor = load_text_image(spec, trust_remote_code, load, "--classes needs a CLIP-style")
    return zero_shot(model.eval(), processor, classes, template, name=f"{spec} (zero-shot)")


def load_text_image(spec: str, trust_remote_code: bool, load: Any, what: str) -> Any:
    """``load(transformers, folder, offline)`` for an ``hf:`` model that reads text and images (a CLIP-style model,
    a vision-language model): a local folder checked for its tokenizer and image processor, the usual offline and
    remote-code rules, a failure as one line; ``what`` starts the error for a spec that is not ``hf:``."""
    from . import hub
    from .hf import _needs_remote_code, _offline, _transformers, check_path

    if not spec.startswith("hf:"):
        raise ClassContrastError(f"{what} Hugging Face model (hf:<folder>), got {spec!r}")
    folder = spec.removeprefix("hf:")
    tf = _transformers()
    tf.utils.logging.disable_progress_bar()
    local = check_path(folder)
    if local and not trust_remote_code and _needs_remote_code(Path(folder)):
        raise ClassContrastError(f"{spec} needs to run Python code from its folder (auto_map); "
                                 "pass --trust-remote-code")
    if local:
        _check_folder(Path(folder), spec)
    offline = not local and not hub.reachable()
    try:
        return load(tf, folder, offline)
    except (OSError, ValueError, KeyError) as e:
        if local or not offline:
            raise ClassContrastError(f"{spec}: {e}".splitlines()[0]) from e
        raise _offline(folder, type(e).__name__) from e


def _check_folder(folder: Path, spec: str) -> None:
    """A zero-shot folder holds its tokenizer and its image processor, or a one-line error says what is missing."""
    tokenizer = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "vocab.txt")
    if not any((folder / name).is_file() for name in tokenizer):
        raise ClassContrastError(f"{spec} has no tokenizer files ({', '.join(tokenizer)}): save the tokenizer into "
                                 "the folder (processor.save_pretrained(folder)); the zero-shot page says how to "
                                 "write one offline")
    if not any((folder / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise ClassContrastError(f"{spec} has no image processor (preprocessor_config.json or processor_config.json): "
                                 "save it into the folder (processor.save_pretrained(folder))")
