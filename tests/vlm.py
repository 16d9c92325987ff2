"""Tiny vision-language models built offline for the tests: random weights from small configs, a word-level
tokenizer written here (Hugging Face ``tokenizers``), the model family's own processor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

WORDS = ["is", "there", "a", "dog", "cat", "wolf", "in", "the", "picture", "?", "yes", "no", "what", "animal",
         "USER:", "ASSISTANT:", "one", "two", "three", "how", "many", "are", "it", "not", "."]


def tokenizer(words: Sequence[str] = WORDS, special: Sequence[str] = ("<image>",),
              extra: dict[str, str] | None = None, **options: Any) -> Any:
    """A word-level tokenizer written here (whitespace-split words): ids [PAD] [UNK] <s> </s>, then ``special``,
    then ``words``; ``extra``: the special tokens a processor looks up by name (default: the image token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "<s>", "</s>", *special, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens=extra or {"image_token": "<image>"},
                                   **options)


def llava(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Any, Any]:
    """(a random 2-layer LLaVA on 32 × 32 images in 8 × 8 patches, its LlavaProcessor)."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tokenizer()
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).to(dtype).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return model, processor


def causal_lm(seed: int = 0, classes: int | None = None) -> tuple[Any, Any]:
    """(a random 2-layer Llama causal LM — or, with ``classes``, a sequence classifier — on the word-level
    tokenizer, float64; the tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    tok = tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                         **({"num_labels": classes} if classes else {}))
    torch.manual_seed(seed)
    model = (LlamaForSequenceClassification if classes else LlamaForCausalLM)(config)
    return model.double().eval(), tok


QWEN_TEMPLATE = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                 "<|vision_start|><|image_pad|><|vision_end|> {% else %}{{ c['text'] }}{% endif %}{% endfor %}"
                 "{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}")


def qwen2_vl(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Any, Any]:
    """(a random 2-layer Qwen2-VL — dynamic resolution: images of any size with sides in multiples of 16, flattened
    into 8 × 8 patches merged 2 × 2 —, its Qwen2VLProcessor with a chat template)."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = tokenizer(special=["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"], extra={
        "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_start_token": "<|vision_start|>",
        "vision_end_token": "<|vision_end|>"})
    ids = tok.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "pad_token_id": tok.pad_token_id,
                     "bos_token_id": None, "eos_token_id": None,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                       "patch_size": 8, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(dtype).eval()
    images = Qwen2VLImageProcessor(min_pixels=16 * 16, max_pixels=48 * 48, patch_size=8, merge_size=2,
                                   temporal_patch_size=2)
    processor = Qwen2VLProcessor(image_processor=images, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=QWEN_TEMPLATE)
    return model, processor


def paligemma(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Any, Any]:
    """(a random 2-layer PaliGemma — SigLIP tower, Gemma decoder, the image and prompt a bidirectional prefix —
    on 32 × 32 images in 8 × 8 patches, its PaliGemmaProcessor)."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    tok = tokenizer()
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                image_size=32, patch_size=8, projection_dim=32)
    text = GemmaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=16, pad_token_id=tok.pad_token_id)
    config = PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=32,
                             image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).to(dtype).eval()
    images = SiglipImageProcessor(size={"height": 32, "width": 32})
    images.image_seq_length = 16
    return model, PaliGemmaProcessor(image_processor=images, tokenizer=tok)


def idefics3(seed: int = 0, dtype: torch.dtype = torch.float64, split: bool = True) -> tuple[Any, Any]:
    """(a random 2-layer Idefics3 — the SmolVLM architecture: images resized to sides in multiples of 32, split
    into 32 × 32 tiles plus the whole image at 32 × 32, each in 8 × 8 patches merged 2 × 2 —, its processor)."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    tiles = [f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4)]
    tok = tokenizer(special=["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *tiles],
                    extra={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                           "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
                    additional_special_tokens=tiles)
    vision = Idefics3VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id)
    config = Idefics3Config(vision_config=vision, text_config=text, scale_factor=2,
                            image_token_id=tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).to(dtype).eval()
    images = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32},
                                    do_image_splitting=split)
    return model, Idefics3Processor(image_processor=images, tokenizer=tok, image_seq_len=4)


# each contrast's scalar for the target "yes" (candidate 0) rather than "no" (candidate 1) from one image's
# candidate scores (1, K): the slow references the maps are checked against
SCALARS = {"original": lambda y: y[0, 0], "weighted": lambda y: y[0, 0] - y[0, 1:].logsumexp(0),
           "probability": lambda y: y[0].softmax(0)[0], "foil:no": lambda y: y[0, 0] - y[0, 1]}


def assert_contrast_maps(ex: Any, x: torch.Tensor, brute: Any) -> None:
    """Every map of ``ex`` (one image, keep_channels) equals autograd of its contrast's scalar through ``brute``
    (image -> candidate scores, a plain re-implementation): rounding at 1e-7 of the map's range (the contrasts are
    combined from a shared low-rank basis)."""
    for key in ex:
        leaf = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(SCALARS[key](brute(leaf)), leaf)
        torch.testing.assert_close(ex[key].maps[0, 0], g[0], rtol=1e-6, atol=1e-7 * float(g.abs().max()))


def qwen2_5_vl(seed: int = 0) -> tuple[Any, Any]:
    """(a random 2-layer Qwen2.5-VL in float64 — Qwen2-VL's processor, a tower with window attention —, its
    processor)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _, processor = qwen2_vl()
    ids = processor.tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(processor.tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                     "pad_token_id": processor.tokenizer.pad_token_id, "bos_token_id": None, "eos_token_id": None,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 8,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 32, "out_hidden_size": 32,
                       "fullatt_block_indexes": [1]},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).double().eval(), processor
