"""A vision-language model's candidate answers: many candidates × contrasts against one map, the floor, and
Captum, measured in the same run.

The model is a randomly initialised Hugging Face LLaVA (a CLIP ViT tower on 224 × 224 images in 32 × 32 patches,
a Llama decoder; no download — the speed does not depend on the weights) asked one question with 4 candidate
answers (one of two tokens). The floor is plain torch on the same module: the batched forward pass of the 4
candidates and ``torch.autograd.grad`` of one candidate's score to the image.

* gradient: 4 candidates × 4 contrasts (original, mean, weighted, probability) = 16 maps
  in one call, against one map, the floor, and Captum's ``Saliency`` computing the same maps one target at a time
  (a contrast model per contrast, as Captum takes one target per call);
* feature ablation over a 7 × 7 grid of patches: the same 16 maps in one call, against Captum's
  ``LLMAttribution(FeatureAblation)`` with an ``ImageMaskInput`` (its multimodal path), which scores one target
  answer's log-probability per call: 4 calls give the 4 candidates' original maps only (contrasts are then
  differences or not available).

    python benchmarks/answers.py --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

import classcontrast as cc

_spec = importlib.util.spec_from_file_location("bench", Path(__file__).with_name("bench.py"))
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench"] = bench
_spec.loader.exec_module(bench)

CANDIDATES = ["yes", "no", "maybe", "a dog"]
WORDS = ["[PAD]", "[UNK]", "<s>", "</s>", "<image>", "is", "there", "a", "dog", "?", "yes", "no", "maybe"]


def llava(device: torch.device, width: int, layers: int) -> tuple[torch.nn.Module, object]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                                  eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                                       num_attention_heads=8, image_size=224, patch_size=32),
        text_config=LlamaConfig(vocab_size=len(WORDS), hidden_size=width, intermediate_size=4 * width,
                                num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8,
                                pad_token_id=0),
        image_token_id=4, vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval().to(device)
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok, patch_size=32,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return model, processor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    model, processor = llava(device, args.width, args.layers)
    bundle = cc.answers(model, processor, "is there a dog ?", CANDIDATES)
    image = cc.sample_image("chelsea").convert("RGB")
    x = bundle.transform(image)[None].to(device)
    k = len(CANDIDATES)
    targets = torch.arange(k, device=device)[None]  # every candidate
    contrasts = ["original", "mean", "weighted", "probability"]
    print(f"LLaVA (CLIP ViT {args.layers}×{args.width}, 224², 32² patches; Llama {args.layers}×{args.width}, random "
          f"weights), {k} candidates, {device}")

    def floor() -> None:
        leaf = x.detach().requires_grad_(True)
        torch.autograd.grad(bundle.model(leaf)[0, 0], leaf)

    rows = []
    one = lambda: cc.explain(bundle, x, "gradient", "original", 0)  # noqa: E731
    many = lambda: cc.explain(bundle, x, "gradient", contrasts, targets)  # noqa: E731
    floor_s, r_one, _ = bench.paired(floor, one, device, args.repeats)
    _, r_many, _ = bench.paired(floor, many, device, args.repeats)
    captum = "-"
    if importlib.util.find_spec("captum") is not None:
        from captum.attr import Saliency

        def per_target() -> None:
            for c in contrasts:
                wrapped = cc.ContrastModel(bundle.model, c)
                for t in range(k):
                    Saliency(wrapped).attribute(x, target=t, abs=False)

        _, r, _ = bench.paired(floor, per_target, device, args.repeats)
        captum = f"{r:.2f}× ({r / r_many:.1f}× ours)"
    rows.append(("gradient", floor_s, r_one, r_many, captum))

    grid = torch.arange(49, device=device).reshape(7, 7).repeat_interleave(32, 0).repeat_interleave(32, 1)
    one = lambda: cc.explain(bundle, x, "feature_ablation", "original", 0, segments=grid)  # noqa: E731
    many = lambda: cc.explain(bundle, x, "feature_ablation", contrasts, targets, segments=grid)  # noqa: E731
    _, r_one, _ = bench.paired(floor, one, device, 1)
    _, r_many, _ = bench.paired(floor, many, device, 1)
    captum = "-"
    try:
        from captum.attr import FeatureAblation, ImageMaskInput, LLMAttribution

        def processed(img: object) -> dict:
            enc = processor(text=bundle.info["text"], images=img, return_tensors="pt")
            return {key: v.to(device) for key, v in enc.items()}

        llm = LLMAttribution(FeatureAblation(model), processor.tokenizer)
        masks = grid.cpu()

        def captum_llm() -> None:
            for answer in CANDIDATES:
                llm.attribute(ImageMaskInput(image=image.resize((224, 224)), mask=masks, processor_fn=processed),
                              target=answer)

        t0 = time.perf_counter()
        captum_llm()
        seconds = time.perf_counter() - t0
        captum = f"{seconds / floor_s:.2f}× for 4 original maps ({seconds / (floor_s * r_many):.1f}× ours' 16)"
    except Exception as err:  # Captum's multimodal path depends on its version and the model family
        captum = f"not run ({type(err).__name__}: {str(err)[:80]})"
    rows.append(("feature ablation 7×7", floor_s, r_one, r_many, captum))
    print(f"{'method':<22} {'floor s':>8} {'1 map':>7} {'16 maps':>8}   Captum, one target per call (× the floor)")
    for name, f, a, b, c in rows:
        print(f"{name:<22} {f:>8.3f} {a:>6.2f}× {b:>7.2f}×   {c}")


if __name__ == "__main__":
    main()
