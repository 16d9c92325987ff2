"""The methods' own options as command-line flags, shared by the commands that run methods.

Each command declares the flags it offers with these defaults (None: the method's own default) and
hands what was given to `method_flags`, which refuses a flag that no chosen method has. No torch here.
"""

from __future__ import annotations

from typing import Any

import typer

STEPS = typer.Option(None, help="integrated_gradients: path points (default 32)")
BASELINE = typer.Option(None, help="integrated_gradients: zeros | blur")
INTEGRATION = typer.Option(None, help="integrated_gradients: gausslegendre | riemann_left | riemann_right | "
                           "riemann_middle | riemann_trapezoid")
SAMPLES = typer.Option(None, help="smoothgrad: noisy copies (25); kernel_shap: coalitions (256; all of them, exact "
                       "Shapley values, when 2^segments is fewer); rise: masks (1000)")
SIGMA = typer.Option(None, help="smoothgrad: noise std as a fraction of the image's range (0.15)")
SQUARED = typer.Option(None, "--squared", help="smoothgrad: SmoothGrad² (mean of squared gradients)")
INTERNAL_BATCH_SIZE = typer.Option(None, help="integrated_gradients, smoothgrad and the gradient-free methods: rows "
                                   "(path points, noisy copies, perturbed inputs) per forward pass (16): bounds "
                                   "memory, the maps are the same")
COMPOSITE = typer.Option(None, help="lrp: a zennit composite (default epsilon_plus_flat)")
CANONIZER = typer.Option(None, help="lrp: auto | none")
DISCARD_RATIO = typer.Option(None, help="attention_rollout: drop this fraction of the weakest links")
ABS = typer.Option(None, "--abs", help="fullgrad: the original abs'ed FullGrad")
WINDOW = typer.Option(None, help="occlusion: the sliding window, W (a WxW window over all channels) or C,H,W as "
                      "Captum's sliding_window_shapes (default: an eighth of each side)")
STRIDE = typer.Option(None, help="occlusion: the window's step, S (every dimension) or C,H,W as Captum's strides "
                      "(default: half the window)")
SEGMENTS = typer.Option(None, help="feature_ablation, kernel_shap: SLIC superpixels per image (50)")
CELLS = typer.Option(None, help="rise: mask cells per side (7)")
KEEP = typer.Option(None, help="rise: probability that a mask cell is kept (0.5)")
ABLATION = typer.Option(None, help="ablationcam: the value of an ablated channel (default: pytorch-grad-cam's rule)")


def sizes(text: str | None, option: str) -> int | tuple[int, ...] | None:
    """``--window 8`` -> 8, ``--window 3,8,8`` -> (3, 8, 8); anything else is a one-line error."""
    from ..errors import ClassContrastError

    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() for p in parts):
        raise ClassContrastError(f"{option} must be a whole number or whole numbers separated by commas, got {text!r}")
    return int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)


def perturbation_flags(window: str | None, stride: str | None, segments: int | None, cells: int | None,
                       keep: float | None, ablation: float | None) -> dict[str, Any]:
    """The gradient-free methods' flags as method options (None: not given)."""
    return {"window": sizes(window, "--window"), "stride": sizes(stride, "--stride"), "segments": segments,
            "cells": cells, "keep": keep, "ablation": ablation}


def method_flags(methods: list[str], **given: Any) -> dict[str, Any]:
    """The method options given on the command line (None = not given), checked against the chosen methods:
    an unknown method, or a flag none of them has, is a one-line error before any work."""
    from .options import check_names

    check_names(methods)  # before torch is imported
    from ..methods import check_options

    check_options(methods, given, cli=True)
    return {k: v for k, v in given.items() if v is not None}
