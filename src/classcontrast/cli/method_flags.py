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
SAMPLES = typer.Option(None, help="smoothgrad: noisy copies (default 25)")
SIGMA = typer.Option(None, help="smoothgrad: noise std as a fraction of the image's range (0.15)")
SQUARED = typer.Option(None, "--squared", help="smoothgrad: SmoothGrad² (mean of squared gradients)")
INTERNAL_BATCH_SIZE = typer.Option(None, help="integrated_gradients, smoothgrad: rows (path points, noisy copies) "
                                   "per forward pass (16): bounds memory, the maps are the same")
COMPOSITE = typer.Option(None, help="lrp: a zennit composite (default epsilon_plus_flat)")
CANONIZER = typer.Option(None, help="lrp: auto | none")
DISCARD_RATIO = typer.Option(None, help="attention_rollout: drop this fraction of the weakest links")
ABS = typer.Option(None, "--abs", help="fullgrad: the original abs'ed FullGrad")


def method_flags(methods: list[str], **given: Any) -> dict[str, Any]:
    """The method options given on the command line (None = not given), checked against the chosen methods:
    an unknown method, or a flag none of them has, is a one-line error before any work."""
    from ..methods import check_options

    check_options(methods, given, cli=True)
    return {k: v for k, v in given.items() if v is not None}
