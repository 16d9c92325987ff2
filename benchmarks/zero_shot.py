"""A zero-shot CLIP explanation against its floor and Captum, measured in the same run.

The model is a randomly initialised Hugging Face ``CLIPModel`` with ViT-B/32's vision tower (no download;
the speed does not depend on the weights). The floor is plain torch on the same bundle: the image forward
pass and ``torch.autograd.grad`` of the weighted objective to the input. The prompts' text embeddings are
computed once, when the bundle is made (``cc.zero_shot``), and reused by every call: their one-off cost is
printed beside the per-call ratios.

    python benchmarks/zero_shot.py --batches 1 8 --prompts 10 --repeats 3
Target (issue): a zero-shot explanation ≤ 1.1× the floor.
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

TARGET = 1.1


def clip(prompts: int, device: torch.device) -> tuple[cc.ModelBundle, float]:
    """(the zero-shot bundle over ``prompts`` classes, the seconds its text embeddings took)."""
    import json
    import tempfile

    import transformers

    chars = list("abcdefghijklmnopqrstuvwxyz .")
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = transformers.CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"))
    end = vocab["<|endoftext|>"]
    config = transformers.CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 512, "intermediate_size": 2048,
                     "num_hidden_layers": 12, "num_attention_heads": 8, "max_position_embeddings": 77,
                     "eos_token_id": end, "bos_token_id": vocab["<|startoftext|>"], "pad_token_id": end},
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 224, "patch_size": 32}, projection_dim=512)
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval().to(device)
    classes = [f"class {chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(prompts)]
    t0 = time.perf_counter()
    bundle = cc.zero_shot(model, tokenizer, classes)
    return bundle, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    bundle, text_seconds = clip(args.prompts, device)
    print(f"zero-shot CLIP (ViT-B/32 vision tower, random weights), {args.prompts} prompts, {device}; "
          f"text embeddings once per prompt set: {text_seconds:.3f} s")
    print(f"{'batch':>5} {'floor s':>9} {'weighted':>9} {'4 contrasts':>12} {'captum':>8}   (× the floor; target "
          f"weighted ≤ {TARGET}×)")
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224, device=device)
        with torch.no_grad():
            t = bundle.model(x).argmax(1)

        def floor() -> None:
            leaf = x.detach().requires_grad_(True)
            torch.autograd.grad(bench.weighted_objective(bundle.model(leaf), t), leaf)

        def ours() -> None:
            cc.explain(bundle, x, "gradient", "weighted", t[:, None])

        def four() -> None:
            cc.explain(bundle, x, "gradient", ["original", "mean", "max", "weighted"], t[:, None])

        floor_s, ratio, _ = bench.paired(floor, ours, device, args.repeats)
        _, ratio4, _ = bench.paired(floor, four, device, args.repeats)
        captum = "-"
        if importlib.util.find_spec("captum") is not None:
            from captum.attr import Saliency

            weighted = cc.ContrastModel(bundle.model, "weighted")
            _, r, _ = bench.paired(floor, lambda: Saliency(weighted).attribute(x, target=t, abs=False), device,
                                   args.repeats)
            captum = f"{r:.2f}"
        print(f"{batch:>5} {floor_s / ratio:>9.3f} {ratio:>9.2f} {ratio4:>12.2f} {captum:>8}")


if __name__ == "__main__":
    main()
