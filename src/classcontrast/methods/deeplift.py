r"""DeepLIFT (Shrikumar et al. 2017, the rescale rule) and DeepLiftSHAP, with every contrast.

DeepLIFT compares the input $x$ with a baseline $x'$: each nonlinearity $f$ passes back, instead of its derivative,
the multiplier $m = \Delta f / \Delta z = (f(z) - f(z'))/(z - z')$ of its input $z$ against its value $z'$ on the
baseline (the derivative $f'(z)$ where $|z - z'| < \varepsilon$, $\varepsilon = 10^{-10}$), and

$$\phi = (x - x') \odot \frac{\partial^{\mathrm{DL}} O}{\partial x}.$$

The modules taking the rule are Captum's (``nn.ReLU``, ``ELU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``Softplus``);
functions (``F.relu``) keep their gradient, as in Captum. Max pooling and softmax modules keep their gradient here
(Captum gives them rules of their own: maps differ on models with ``nn.MaxPool``). A module called several times
in one forward pass (a ResNet block's shared ReLU) is handled call by call (Captum refuses it).

The contrast enters as its output gradient $\partial O/\partial y$ at $x$, as for every gradient method: the rule
acts inside the network, not through the contrast. The multipliers do not depend on that gradient, so the map is
**linear in it** and every contrast and target shares the passes. For ReLU networks of linear layers, DeepLIFT is
complete: $\sum \phi = y_t(x) - y_t(x')$ for ``original`` (summation-to-delta).

As Captum does, the baseline rows run in the same forward pass as the images (the rows ``cat([x, x'])``), so every
module sees its input and its reference together. `DeepLiftShap` averages DeepLIFT over a distribution of baselines
(Captum's ``DeepLiftShap``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ClassContrastError
from .base import InputMethod, Pass, Recording, check_internal_batch_size, row_chunks
from .integrated import path_start
from .shap import distribution

RESCALED = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
EPS = 1e-10


def _derivative(module: nn.Module, z: Tensor) -> Tensor:
    """The elementwise derivative f'(z) of an elementwise module (its ``forward``, past its hooks, on a copy: an
    in-place module changes nothing)."""
    with torch.enable_grad():
        leaf = z.detach().clone().requires_grad_(True)
        out = module.forward(leaf.clone())
        return torch.autograd.grad(out.sum(), leaf)[0]


def rescale(model: nn.Module, stack: ExitStack) -> None:
    """Hooks (removed when ``stack`` closes) giving every rescaled module of ``model`` DeepLIFT's multipliers: the
    rows of each call are ``cat([x, x'])``; the output keeps its value and passes back $m \\cdot g$ to its input, $m$
    the x half's multiplier (used for both halves, as Captum does)."""
    inputs: dict[int, list[Tensor]] = {}

    def before(module: nn.Module, args: Any) -> Any:
        inputs.setdefault(id(module), []).append(args[0])
        return (args[0].clone(), *args[1:]) if getattr(module, "inplace", False) else None

    def after(module: nn.Module, args: Any, out: Tensor) -> Any:
        z = inputs[id(module)].pop()
        with torch.no_grad():
            z_x, z_ref = z.detach().chunk(2)
            o_x, o_ref = out.detach().chunk(2)
            dz = z_x - z_ref
            near = dz.abs() < EPS
            m = (o_x - o_ref) / torch.where(near, torch.ones_like(dz), dz)
            if bool(near.any()):  # (one device sync a call; the derivative only where it is needed)
                m = torch.where(near, _derivative(module, z_x), m)
            m = torch.cat([m, m])
        return out.detach() + m * (z - z.detach())

    for module in model.modules():
        if type(module) in RESCALED:
            stack.enter_context(module.register_forward_pre_hook(before))
            stack.enter_context(module.register_forward_hook(after))


class DeepLift(InputMethod):
    r"""DeepLIFT, the rescale rule: $\phi = (x - x') \odot \partial^{\mathrm{DL}} O/\partial x$ (module docstring),
    summed over colour channels unless ``keep_channels``. ``baseline`` x′ as Integrated Gradients': ``"zeros"``,
    ``"blur"`` or a tensor broadcastable to the images."""

    option_help: ClassVar[dict[str, str]] = {"baseline": "zeros | blur"}

    name = "deeplift"
    aliases = ("deep_lift",)
    multipass = True  # the baseline rows share the forward pass with the images' (targets: from the images)
    windows = False  # its hooks act on the model's layers, which a sliding window runs once per window

    def __init__(self, baseline: str | Tensor = "zeros", keep_channels: bool = False,
                 internal_batch_size: int | None = None) -> None:
        if isinstance(baseline, str) and baseline not in ("zeros", "blur"):
            raise ClassContrastError(f"unknown baseline {baseline!r}; choose zeros, blur or give a tensor")
        if isinstance(baseline, Tensor) and (baseline.numel() == 0 or not bool(torch.isfinite(baseline).all())):
            raise ClassContrastError(f"{self.name}: the baseline is empty or holds NaN or infinite values")
        self.baseline = baseline
        self.keep_channels = keep_channels
        self.internal_batch_size = check_internal_batch_size(internal_batch_size)

    def options(self) -> dict[str, object]:
        base = self.baseline if isinstance(self.baseline, str) else f"tensor{tuple(self.baseline.shape)}"
        return {"baseline": base, "keep_channels": self.keep_channels,
                "internal_batch_size": self.internal_batch_size}

    def distribution(self, x: Tensor) -> Tensor:
        """(B or 1, N, C, *S): the baselines of each image (one for DeepLIFT)."""
        return path_start(self.baseline, x)[:, None]

    def passes(self, x: Tensor) -> Iterator[Pass]:
        d = self.distribution(x).detach()
        n = d.shape[1]
        for rows in row_chunks(x.shape[0] * n, self.internal_batch_size, x.device):
            image, k = rows // n, rows % n
            start = d[image if d.shape[0] > 1 else torch.zeros_like(image), k]
            both = torch.cat([x.detach()[image], start])
            yield Pass(both, torch.cat([image, image]), {"delta": x.detach()[image] - start, "n": n})

    def record(self, model: nn.Module, x: Tensor, stack: ExitStack) -> Recording:
        rec = super().record(model, x, stack)
        rescale(model, stack)
        return rec

    def compute(self, rec: Recording, grads: list[Tensor]) -> Tensor:
        delta, n = rec.state["delta"], rec.state["n"]
        half = delta.shape[0]
        maps = self.channels(grads[0][:, :half] * delta[None] / n)
        return torch.cat([maps, torch.zeros_like(maps)], 1)  # the baseline rows explain nothing


class DeepLiftShap(DeepLift):
    r"""DeepLiftSHAP (Captum's ``DeepLiftShap``): DeepLIFT averaged over a distribution of baselines,
    $\phi = \frac1N \sum_n (x - x'_n) \odot \partial^{\mathrm{DL}(x'_n)} O/\partial x$; ``baselines`` a (N, C, *S)
    tensor (in Python), one (C, *S) image, or ``"zeros"`` / ``"blur"`` (one baseline: DeepLIFT)."""

    option_help: ClassVar[dict[str, str]] = {"baselines": "zeros | blur, or a tensor (N, C, *S) of baselines"}

    name = "deeplift_shap"
    aliases = ("deepliftshap",)

    def __init__(self, baselines: str | Tensor = "zeros", keep_channels: bool = False,
                 internal_batch_size: int | None = None) -> None:
        super().__init__(baselines, keep_channels, internal_batch_size)
        self.baselines = baselines

    def options(self) -> dict[str, object]:
        base = self.baselines if isinstance(self.baselines, str) else f"tensor{tuple(self.baselines.shape)}"
        return {"baselines": base, "keep_channels": self.keep_channels,
                "internal_batch_size": self.internal_batch_size}

    def distribution(self, x: Tensor) -> Tensor:
        return distribution(self.baselines, x, self.name)


__all__ = ["RESCALED", "DeepLift", "DeepLiftShap", "rescale"]
