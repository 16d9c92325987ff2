"""Explanation methods, usable by name or object."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ClassContrastError, did_you_mean
from ..text import spelling
from .base import GradientMethod, InputMethod, Method, Recording
from .cam import GradCAM, LayerMethod, LayerReading, LinearApprox, XGradCAM
from .cams import GradCAMPlusPlus, HiResCAM, LayerCAM
from .deeplift import DeepLift, DeepLiftShap
from .eigen import EigenCAM, EigenGradCAM
from .fullgrad import FullGrad
from .gradient import Gradient, GradientXInput
from .guided import Deconvolution, GuidedBackprop, GuidedGradCAM
from .integrated import IntegratedGradients
from .lrp import LRP
from .perturbation import Occlusion, PerturbationMethod
from .score_cams import AblationCAM, ScoreCAM
from .segment_methods import RISE, FeatureAblation, KernelShap, Lime
from .shap import GradientShap
from .smooth import SmoothGrad
from .transformer import AttentionRollout, VitGradCAM, capture_attention, transformer_blocks

METHODS: dict[str, type[Method]] = {
    m.name: m
    for m in (Gradient, GradientXInput, LinearApprox, GradCAM, XGradCAM, FullGrad, VitGradCAM, AttentionRollout,
              IntegratedGradients, SmoothGrad, LRP, GradCAMPlusPlus, LayerCAM, HiResCAM, GuidedBackprop,
              GuidedGradCAM, Occlusion, FeatureAblation, KernelShap, RISE,
              ScoreCAM, AblationCAM, EigenCAM, EigenGradCAM, GradientShap, Deconvolution, DeepLift, DeepLiftShap, Lime)
}


def register_method(cls: type[Method]) -> type[Method]:
    """Add a method class to the registry under ``cls.name`` (usable as a decorator)."""
    METHODS[cls.name] = cls
    return cls


def spellings() -> dict[str, str]:
    """Every accepted spelling of a registered method (`classcontrast.text.spelling`: its name, its class name and
    the peers' names it declares in ``aliases``) -> its name. Names follow one style: the published name in lower
    case, its words joined by ``_`` (``integrated_gradients``, ``gradcam_plus_plus``; one-word names as their
    authors write them: ``gradcam``, ``scorecam``, ``smoothgrad``)."""
    out: dict[str, str] = {}
    for name, cls in METHODS.items():
        for text in (name, cls.__name__, *vars(cls).get("aliases", ())):  # its own, not a base's
            out.setdefault(spelling(text), name)
    return out


def canonical_name(name: str) -> str | None:
    """The registered name of the method spelled ``name`` (``"Grad-CAM++"`` -> ``"gradcam_plus_plus"``), else None."""
    return spellings().get(spelling(name)) if isinstance(name, str) else None


def method_class(name: str) -> type[Method]:
    """The registered method class named ``name`` (any spelling, see `spellings`); an unknown name is a one-line
    error."""
    known = canonical_name(name)
    cls = METHODS.get(known) if known else None
    if cls is None:
        raise ClassContrastError(f"unknown method {name!r}{did_you_mean(str(name), METHODS)} "
                                 f"(methods: {', '.join(METHODS)})")
    return cls


def method_options(name: str) -> set[str]:
    """The option names a registered method accepts (e.g. ``{"layer", "relu"}`` for ``gradcam``)."""
    known = canonical_name(name)
    cls = METHODS.get(known) if known else None
    return set() if cls is None else set(inspect.signature(cls.__init__).parameters) - {"self"}


def options_for(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Of options meant for several methods, the ones method ``name`` accepts (None = not given)."""
    accepted = method_options(name)
    return {k: v for k, v in options.items() if k in accepted and v is not None}


@dataclass(frozen=True)
class OptionDecl:
    """One option of a method, declared once on it: its name, the kind of value the command line reads for it
    (``int``, ``float``, ``bool``, ``str``, ``sizes``: a whole number or whole numbers separated by commas), its
    default (the ``__init__``'s) and its help (the class's ``option_help``)."""

    name: str
    kind: str
    default: Any
    help: str


def declared_options(name: str) -> list[OptionDecl]:
    """The options method ``name`` declares (its ``__init__``'s parameters, typed by their annotations, helped by
    ``option_help`` along the class's bases): what the command line's flags are made from."""
    import typing

    cls = method_class(name)
    hints = typing.get_type_hints(cls.__init__)
    helps: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        helps.update(vars(base).get("option_help", {}))
    out = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        out.append(OptionDecl(p.name, _kind(hints.get(p.name, Any)), p.default, helps.get(p.name, "")))
    return out


def _kind(hint: Any) -> str:
    """The command line's kind of value for an annotation (see `OptionDecl`)."""
    import types
    import typing

    members = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if any(typing.get_origin(m) is tuple for m in members):
        return "sizes"
    for kind in (bool, str, float, int):
        if kind in members:
            return "str" if kind is str else kind.__name__
    return "str"


def check_options(methods: Sequence[str], options: dict[str, Any], cli: bool = False) -> None:
    """Unknown methods, and a given (not None) option that none of ``methods`` has, are one-line errors
    (naming the option as a command-line flag, ``--internal-batch-size``, when ``cli``)."""
    for name in methods:
        method_class(name)
    for option, value in options.items():
        if value is not None and not any(option in method_options(m) for m in methods):
            shown = "--" + option.replace("_", "-") if cli else option
            raise ClassContrastError(f"{shown} is not an option of {', '.join(methods)}")


def get_method(spec: str | Method, **options: Any) -> Method:
    """A method from its name and options (e.g. ``layer="features.40"``, ``relu=True``) or an instance.

    Options left at None are not passed; an option the method does not have is a clear error.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(spec, Method):
        if options:
            raise ClassContrastError(f"options {sorted(options)} cannot be combined with a method object")
        return spec
    cls = method_class(spec)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ClassContrastError(f"method {cls.name!r} has no option {unknown[0]!r}")
    return cls(**options)


__all__ = [
    "LRP",
    "METHODS",
    "RISE",
    "AblationCAM",
    "AttentionRollout",
    "Deconvolution",
    "DeepLift",
    "DeepLiftShap",
    "EigenCAM",
    "EigenGradCAM",
    "FeatureAblation",
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GradientMethod",
    "GradientShap",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputMethod",
    "IntegratedGradients",
    "KernelShap",
    "LayerCAM",
    "LayerMethod",
    "LayerReading",
    "Lime",
    "LinearApprox",
    "Method",
    "Occlusion",
    "OptionDecl",
    "PerturbationMethod",
    "Recording",
    "ScoreCAM",
    "SmoothGrad",
    "VitGradCAM",
    "XGradCAM",
    "canonical_name",
    "capture_attention",
    "check_options",
    "declared_options",
    "get_method",
    "method_class",
    "method_options",
    "options_for",
    "register_method",
    "spellings",
    "transformer_blocks",
]
