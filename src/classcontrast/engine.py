"""The engine: one forward pass, one batched backward, any method × any contrasts × K units per input.

Orchestration alone: what is explained (images, regions, objects) is the units' business
(`classcontrast.units`), how a map is made the method's (`classcontrast.methods`), which scalar the
contrast's (`classcontrast.contrasts`), and the many objectives' backward passes `classcontrast.backprop`'s.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple, cast, overload

import torch
from torch import Tensor, nn

from .backprop import combine, low_rank, vjp
from .classes import class_indices, names_classes
from .contrasts import CONTRASTS, Contrast, get_contrast
from .errors import ClassContrastError, ClassContrastWarning, first_line
from .explanation import Explanation, Explanations
from .layers import PiecewiseModel
from .methods import METHODS, GradientMethod, LayerReading, Method, Recording, canonical_name, get_method
from .methods.base import Pass
from .methods.perturbation import PerturbationMethod
from .outputs import all_finite, finite, is_binary
from .progress import tick
from .state import frozen_eval
from .units import Units, claim, from_output
from .units.base import Selection, natural_head, unwrapped

ContrastSpec = str | Contrast
__all__ = ["check_input", "explain", "low_rank", "model_head", "unwrap_model", "vjp"]


def unwrap_model(model: Any) -> nn.Module:
    """The ``nn.Module`` to explain: inside a [`ModelBundle`][classcontrast.models.bundle.ModelBundle], a
    ``DataParallel`` / ``DistributedDataParallel`` wrapper or a ``torch.compile``'d module (the eager
    module computes the same function, and its layer names are the ones users know) or a model family's own
    wrapper object that a kind of unit knows (`classcontrast.units.base.unwrapped`)."""
    net = model if isinstance(model, nn.Module) else getattr(model, "model", model)
    if not isinstance(net, nn.Module):
        raise ClassContrastError(f"expected a torch nn.Module or a ModelBundle, got {type(model).__name__}")
    while True:
        inner = unwrapped(net)
        wrapped = getattr(net, "module", None)
        compiled = getattr(net, "_orig_mod", None)
        if (isinstance(net, nn.DataParallel) or type(net).__name__ == "DistributedDataParallel") \
                and isinstance(wrapped, nn.Module):
            net = wrapped
        elif type(net).__name__ == "OptimizedModule" and isinstance(compiled, nn.Module):
            net = compiled
        elif inner is not None:
            net = inner
        else:
            return net


def check_input(x: Any, finite: bool = True) -> Tensor:
    """Validate a batch: a finite floating-point (B, C, *S) tensor, S of 1 to 3 spatial dimensions — images
    (B, C, H, W), clips (B, C, T, H, W), volumes (B, C, D, H, W), signals (B, C, L) — (``finite=False``: the
    values are checked later, by the caller, without a device sync here)."""
    if not isinstance(x, Tensor):
        raise ClassContrastError(f"x must be a torch.Tensor of shape (B, C, H, W) (or (B, C, *S) for 1 to 3 "
                                 f"spatial dimensions), got {type(x).__name__}")
    if not 3 <= x.ndim <= 5:
        one = " (one input without its batch dimension? x[None])" if x.ndim == 2 else ""
        raise ClassContrastError(f"x must have shape (B, C, *S) with 1 to 3 spatial dimensions S (images: (B, C, "
                                 f"H, W)), got {tuple(x.shape)}{one}")
    if not x.dtype.is_floating_point:
        raise ClassContrastError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0:
        raise ClassContrastError("x is an empty batch")
    if finite and not bool(all_finite(x)):
        raise ClassContrastError(_NOT_FINITE)
    return x


_NOT_FINITE = "x contains NaN or Inf values"


_MODEL_ERRORS = (RuntimeError, AssertionError, TypeError, ValueError)  # what a model's own checks raise


def _model_failed(x: Tensor, e: BaseException) -> ClassContrastError:
    hint = "; if x is one image, add the batch dimension: x[None]" if x.ndim == 3 else ""
    return ClassContrastError(f"the model failed on an input of shape {tuple(x.shape)} and dtype {x.dtype}: "
                              f"{first_line(e)}{hint}")


def _run(net: nn.Module, x: Tensor) -> Any:
    """The model's raw output for ``x``; a failing model is a one-line error."""
    try:
        return net(x)
    except ClassContrastError:
        raise
    except _MODEL_ERRORS as e:
        raise _model_failed(x, e) from e


@overload
def explain(model: Any, x: Tensor, method: str | Method = ..., contrast: ContrastSpec = ..., targets: Any = ..., *,
            layer: str | nn.Module | int | None = ..., relu: bool | None = ..., batched: bool | None = ...,
            head: str | None = ..., **method_options: Any) -> Explanation: ...


@overload
def explain(model: Any, x: Tensor, method: str | Method = ...,
            contrast: list[ContrastSpec] | tuple[ContrastSpec, ...] = ..., targets: Any = ..., *,
            layer: str | nn.Module | int | None = ..., relu: bool | None = ..., batched: bool | None = ...,
            head: str | None = ..., **method_options: Any) -> Explanations: ...


def explain(
    model: Any,
    x: Tensor,
    method: str | Method = "gradcam",
    contrast: ContrastSpec | Sequence[ContrastSpec] = "weighted",
    targets: Any = None,
    *,
    layer: str | nn.Module | int | None = None,
    relu: bool | None = None,
    batched: bool | None = None,
    head: str | None = None,
    **method_options: Any,
) -> Explanation | Explanations:
    """Explain why ``model`` scores each target class of each image in ``x`` against the others.

    Args:
        model: an ``nn.Module`` returning logits (B, C) (or a tuple starting with them, or an object or
            dict with ``logits``, as Hugging Face models return), or a
            [`ModelBundle`][classcontrast.models.bundle.ModelBundle]
            (``DataParallel`` and ``torch.compile`` wrappers are looked through).
        x: preprocessed inputs (B, C, *S), on the model's device, any floating dtype: images (B, C, H, W),
            clips (B, C, T, H, W), volumes (B, C, D, H, W), signals (B, C, L).
        method: ``"gradient"``, ``"gradient_x_input"``, ``"integrated_gradients"``, ``"smoothgrad"``,
            ``"lrp"``, ``"linear_approx"``, ``"gradcam"``, ``"xgradcam"``, ``"fullgrad"``,
            ``"vit_gradcam"``, ``"attention_rollout"`` (or any method added with ``register_method``),
            or a ``Method``.
        contrast: a name (``"original"``, ``"mean"``, ``"max"``, ``"weighted"``, ``"probability"``),
            a [`Contrast`][classcontrast.contrast_base.Contrast] such as ``Foil(s)``, or a list of them (then the
            result maps each contrast's key, e.g. ``"weighted"`` or ``"foil:Egyptian cat"``, to its
            [`Explanation`][classcontrast.explanation.Explanation]).
        targets: None (top-1), a class, one class per image, (B, K) classes, ``TopK(k)``, or
            ``Threshold(p)`` (every class with probability >= p under the head: a multi-label model's
            labels); a class is an index, or a name (``"tiger cat"``) when ``model`` is a ModelBundle.
            A segmenter's units are regions (`classcontrast.units.Region`), a detector's the objects it
            reports (`classcontrast.units.selectors.Detections`).
        layer: the method's layer (a module name such as ``"features.40"``, a module, or a ViT block
            index). With a ModelBundle and no ``layer``, CAM methods use the bundle's own layer when it
            names one.
        relu: the textbook ReLU on CAM maps.
        head: how the model scores its classes: ``"softmax"`` (one decision among the classes) or
            ``"sigmoid"`` (multi-label: each class its own yes/no decision, probability $\\sigma(y_t)$; then
            ``probability`` is $\\sigma(y_t)$ and ``weighted`` is $y_t$, the same map as ``original``, while
            ``mean``, ``max`` and ``Foil`` stay logit differences). Default: the ModelBundle's ``head``,
            else softmax.
        batched: back-propagate all objectives in one vectorised pass (``True``) or one pass each
            (``False``); the default does the first on accelerators and the second on CPUs, where
            measured it is as fast and needs no vectorisation machinery.
        **method_options: the method's other options (e.g. ``keep_channels=True``, ``steps=16``,
            ``abs=True``, ``discard_ratio=0.9``); an option the method does not have is an error.

    Returns:
        An [`Explanation`][classcontrast.explanation.Explanation] with ``maps`` (B, K, *S), or
        [`Explanations`][classcontrast.explanation.Explanations] for a list of
        contrasts. All contrasts and targets come from ONE forward pass (one per path point or
        noisy copy for the sampling methods).

    Thread safety: any number of threads may call this on the same model at once; calls on one model
    are serialised and each leaves the model as it found it (see `classcontrast.state`).
    Works inside ``torch.no_grad()`` and ``torch.inference_mode()``.
    """
    m = get_method(method, layer=_bundle_layer(model, method, layer), relu=relu, **method_options)
    # x is checked with the logits and the maps at the end: one device sync a call
    net, x, categories, targets, head = call_setup(model, x, targets, head, finite=False)
    bad_input = ~all_finite(x)
    many, asked = asked_contrasts(contrast, categories)
    names = _unique_names([c.key(categories) for c in asked])
    with frozen_eval(net):
        run = m.model_for_call(net)  # the model itself, or a private copy the method may change (LRP)
        if x.is_inference():  # a tensor made under inference_mode: a normal copy autograd can use
            x = x.clone()
        units = claim(run, targets, categories, head)
        units, y, sel, contrasts, total, rec = _maps(m, run, x, units, (targets, categories, head), asked, batched,
                                                     net)
    k = sel.targets.shape[1]
    maps = total.reshape(len(contrasts), k, *total.shape[1:]).transpose(1, 2)  # (M, B, K, ...)
    maps = _check_result(bad_input, y, maps, units.void(contrasts, y, sel), units.expected_zero(contrasts, y, sel),
                         m, rec.layer)
    normalize = None if isinstance(model, nn.Module) else getattr(model, "normalize", None)
    out = Explanations()
    for i, (name, c, fields) in enumerate(zip(names, contrasts, units.results(contrasts, y, sel), strict=True)):
        out[name] = Explanation.made(layer_maps=maps[i], method=m.name, contrast=name, layer=rec.layer,
                                     options=m.options(), inputs=x, to_pixels=getattr(normalize, "inverse", None),
                                     categories=categories, size=tuple(x.shape[2:]), objective=c,
                                     class_agnostic=getattr(m, "class_agnostic", False), **fields)
    return out if many else out[names[0]]


class CallSetup(NamedTuple):
    """What every call settles first (`call_setup`): the module, the checked input, the class names, the targets
    (class names made indices) and the head."""

    net: nn.Module
    x: Tensor
    categories: Sequence[str] | None
    targets: Any
    head: str


def call_setup(model: Any, x: Any, targets: Any, head: str | None, *, finite: bool = True) -> CallSetup:
    """A call's first steps, shared by `explain`, `units_of` and `classcontrast.crp.concepts`: the module inside
    ``model`` (`unwrap_model`), ``x`` checked (`check_input`; ``finite=False``: its values later), a ModelBundle's
    class names, ``targets`` given by name made indices, and the head (`model_head`)."""
    net = unwrap_model(model)
    x = check_input(x, finite=finite)
    categories = None if isinstance(model, nn.Module) else getattr(model, "categories", None)
    if names_classes(targets):
        targets = class_indices(targets, categories, f"targets={targets!r}")
    return CallSetup(net, x, categories, targets, model_head(model, net, head))


def asked_contrasts(contrast: Any, categories: Sequence[str] | None) -> tuple[bool, list[Contrast]]:
    """(whether a list was given, the contrasts) — each a `Contrast`, a foil given by name resolved with
    ``categories``; none is a one-line error."""
    many = isinstance(contrast, (list, tuple))
    given: Sequence[ContrastSpec] = contrast if many else [cast(ContrastSpec, contrast)]
    asked = [get_contrast(c).named(categories) for c in given]
    if not asked:
        raise ClassContrastError("no contrast given")
    return many, asked


def units_of(model: Any, x: Tensor, targets: Any = None, *, head: str | None = None) -> list[list[Any]]:
    """The units ``targets`` asks for on ``x`` — a detector's objects (box, label, score), a segmenter's regions, a
    classifier's classes —, per input, from one forward pass without gradients: what a count needs (an audit's first
    phase), no map. The same units `explain` would explain with these ``targets``."""
    from .units.records import ImageUnit

    net, x, categories, targets, head = call_setup(model, x, targets, head)
    original = get_contrast("original")
    with frozen_eval(net), torch.no_grad(), ExitStack() as stack:
        units = claim(net, targets, categories, head)
        spec = (targets, categories, head)
        units, chosen, logits = _outputs(units, None, net, x, torch.arange(len(x), device=x.device), stack, *spec)
        y, sel, contrasts = _resolve(units, chosen, logits, [original])
        fields = units.results(contrasts, y, sel)[0]
    if "units" in fields:
        return cast("list[list[Any]]", fields["units"])
    logits = fields["logits"]
    return [[ImageUnit(target=c, logits=logits[i]) for c in row] for i, row in enumerate(sel.targets.tolist())]


_Spec = tuple[Any, Sequence[str] | None, str]  # a call's targets, class names and head
_Maps = tuple[Units, Tensor, Selection, list[Contrast], Tensor, Recording]  # units, y, selection, contrasts, maps...


def _maps(m: Method, run: nn.Module, x: Tensor, units: Units | None, spec: _Spec, asked: Sequence[Contrast],
          batched: bool | None, net: nn.Module) -> _Maps:
    """The maps (M·K, B, ...) by the method's protocol: from gradients or from perturbed scores."""
    if isinstance(m, PerturbationMethod):
        return _perturbed(m, run, x, units, spec, asked, batched, net)
    if isinstance(m, GradientMethod):
        return _backpropagated(m, run, x, units, spec, asked, batched, net)
    raise ClassContrastError(f"{m.name} follows neither method protocol (GradientMethod, PerturbationMethod)")


def _backpropagated(m: GradientMethod, run: nn.Module, x: Tensor, units: Units | None, spec: _Spec,
                    asked: Sequence[Contrast], batched: bool | None, net: nn.Module) -> _Maps:
    """The gradient methods' maps (M·K, B, ...): for each forward pass the method asks for, every objective's
    backward pass (one pass on the images for most methods; the multi-pass ones sum their rows per image)."""
    n = x.shape[0]
    y: Tensor | None = None
    sel: Selection | None = None
    if m.multipass:  # targets come from the images themselves, not from the sampled inputs
        if units is not None and not units.follows_samples:
            raise ClassContrastError(units.refusal)
        with torch.no_grad(), ExitStack() as probe:
            units, chosen, logits = _outputs(units, None, run, x, torch.arange(n, device=x.device), probe, *spec)
        y, sel, contrasts = _resolve(units, chosen, logits.detach(), asked)
    total: Tensor | None = None
    for p in m.passes(x):
        with ExitStack() as hooks:  # open until the pass's backward is done (LRP rules act there)
            rec = _record(m, run, p.input, hooks)
            rec.state.update(p.state)
            units, chosen, logits = _outputs(units, sel, run, rec.input, p.rows, hooks, *spec)
            if sel is None:
                y, sel, contrasts = _resolve(units, chosen, logits.detach(), asked)
            m.after_forward(rec)
            maps = _backward(m, units, contrasts, logits, rec, sel, p.rows, n, batched, net)
            del logits
        tick()
        if not m.multipass:
            total = maps
        else:  # rows of the same image are summed
            total = maps.new_zeros((maps.shape[0], n, *maps.shape[2:])) if total is None else total
            total.index_add_(1, p.rows, maps)
    assert total is not None and units is not None and y is not None and sel is not None
    return units, y, sel, contrasts, total, rec


def _perturbed(m: PerturbationMethod, run: nn.Module, x: Tensor, units: Units | None, spec: _Spec,
               asked: Sequence[Contrast], batched: bool | None, net: nn.Module) -> _Maps:
    """The gradient-free methods' maps (M·K, B, ...): the images' own forward fixes the units, the targets and each
    objective's value; the method then has its perturbed inputs scored — every contrast of every unit from each
    perturbed forward, no backward pass."""
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    if units is not None and not units.follows_samples:  # only a kind claimed before the forward refuses samples
        raise ClassContrastError(units.refusal)
    with torch.no_grad():
        with ExitStack() as hooks:
            rec = _record(m, run, x, hooks)
            units, chosen, logits = _outputs(units, None, run, x, rows, hooks, *spec)
            m.after_forward(rec)
        y, sel, contrasts = _resolve(units, chosen, logits, asked)
        clean = units.objectives(contrasts, logits, sel, rows, n)

        def score(p: Pass) -> Tensor:
            """(M·K, B') the objectives on the perturbed inputs of one pass."""
            with ExitStack() as hooks:
                m.perturb(run, p, hooks)
                _, _, out = _outputs(units, sel, run, p.input, p.rows, hooks, *spec)
                scored = units.objectives(contrasts, out, sel, p.rows, n)
            tick()
            return scored

        total = m.attribute(x, rec, clean, score)
    return units, y, sel, contrasts, total, rec


def _bundle_layer(model: Any, method: str | Method, layer: Any) -> Any:
    """The call's layer: the one given, else a ModelBundle's own CAM layer for a CAM method."""
    if layer is None and getattr(model, "layer", None) and isinstance(method, str) \
            and issubclass(METHODS.get(canonical_name(method) or "", Method), LayerReading):
        return model.layer
    return layer


def model_head(model: Any, net: nn.Module, head: str | None) -> str:
    """The call's head: the one given, else a ModelBundle's (a module's ``head`` attribute is its classifier
    layer), else softmax — or the head the model's kind of unit scores it with (sigmoid-scored detectors:
    `classcontrast.units.base.natural_head`)."""
    if head is None:
        head = "softmax" if isinstance(model, nn.Module) else getattr(model, "head", None) or "softmax"
        head = natural_head(net) or head
    if head not in ("softmax", "sigmoid"):
        raise ClassContrastError(f"head must be 'softmax' or 'sigmoid', got {head!r}")
    return head


def _record(m: Method, run: nn.Module, x: Tensor, hooks: ExitStack) -> Recording:
    """The method's recording for one pass (its hooks on ``hooks``); recording may run the model (to find the
    default layer), whose failure is one line. A model run window by window takes the input-space methods only."""
    if isinstance(run, PiecewiseModel) and not m.windows:
        raise ClassContrastError(f"{m.name} reads the model's layers, which run once per window under a sliding "
                                 "window; explain it with gradient, gradient_x_input, integrated_gradients or "
                                 "smoothgrad")
    try:
        return m.record(run, x, hooks)
    except ClassContrastError:
        raise
    except _MODEL_ERRORS as e:
        raise _model_failed(x, e) from e


def _outputs(units: Units | None, sel: Selection | None, run: nn.Module, x: Tensor, rows: Tensor, stack: ExitStack,
             targets: Any, categories: Sequence[str] | None, head: str) -> tuple[Units, Selection | None, Tensor]:
    """One forward pass: (the call's units — chosen from the first output when no kind claimed the model
    before —, the selection — the call's, or on the images' own pass (``sel`` None) what the units choose before
    reading their logits —, the logits the objectives are functions of, with their graph)."""
    seen = units.watch(run, stack) if units is not None else None
    raw = _run(run, x)
    if units is None:
        units = from_output(raw, x, run, targets, categories, head)
    own = sel is None
    chosen = units.choose(raw, x, seen) if own else sel
    return units, chosen, units.logits(raw, x, rows, seen, chosen, own)


def _resolve(units: Units, chosen: Selection | None, y: Tensor,
             asked: Sequence[Contrast]) -> tuple[Tensor, Selection, list[Contrast]]:
    """On the images' own logits ``y``: the call's selection and the contrasts for its head (a one-output model
    read as [0, y] is a softmax of sigma(y), whatever head was asked for)."""
    head = "softmax" if units.head == "sigmoid" and is_binary(y) else units.head
    contrasts = [c.for_head(head) for c in asked]
    if head == "sigmoid" and {"original", "weighted"} <= {c.name for c in contrasts if c.name in CONTRASTS}:
        warnings.warn("with a sigmoid head 'weighted' is y_t, the same map as 'original'", ClassContrastWarning,
                      stacklevel=4)
    sel = units.resolve(y, head, chosen)
    units.warn_foils(contrasts, y, sel)
    return y, sel, contrasts


def _backward(m: GradientMethod, units: Units, contrasts: Sequence[Contrast], logits: Tensor, rec: Recording,
              sel: Selection, rows: Tensor, n: int, batched: bool | None, net: nn.Module) -> Tensor:
    """(M·K, B', ...) maps of one pass: every contrast's cotangent for every unit back-propagated (through a
    shared low-rank basis when the method is linear in the gradient) and turned into maps by the method."""
    cot = units.cotangents(contrasts, logits.detach(), sel, rows, n)
    if not m.reads_gradient:  # no backward pass: the method reads the gradients' shapes only
        return m.compute(rec, [t.new_zeros(()).expand(cot.shape[0], *t.shape) for t in rec.tensors]).detach()
    reduced = units.basis(cot) if m.linear else None
    vectorise = logits.device.type != "cpu" if batched is None else batched
    chunks = vjp(logits, rec.tensors, cot if reduced is None else reduced[0], batched=vectorise and m.batched_vjp)
    try:
        maps = torch.cat([m.compute(rec, grads).detach() for grads in chunks])
    except ClassContrastError:
        raise
    except _MODEL_ERRORS as e:  # e.g. a rule's backward hook on a layer it cannot handle
        raise ClassContrastError(f"method {m.name} failed in the backward pass of {type(net).__name__}: "
                                 f"{first_line(e)}{m.backward_hint}") from e
    return maps if reduced is None else combine(reduced[1], maps)


def _check_result(bad_input: Tensor, y: Tensor, maps: Tensor, void: Tensor, asked_zero: Tensor, m: Method,
                  layer: str | None) -> Tensor:
    """The one place every call's result is checked, with one device sync when all is well: an input or logits
    with NaN or inf are a one-line error (an overflow gives no contrast and no map); maps (M, B, K, ...) of a
    `void` objective (identically 0: a foil equal to its target, an empty region) are set to exact zeros (they are
    already, but for a method dividing by the objective, whose 0/0 is 0 here, and one ignoring it); any other map
    with a NaN or an infinity is a one-line error naming the method (a non-finite map is never returned, saved or
    drawn); maps that are exactly 0 everywhere although nothing asked for that (``asked_zero``: void, a filler, a
    one-output model's class 0; or ``relu=True``) get one line naming the layer. Returns the maps."""
    void = void.to(maps.device)  # (M, B, K): exactly 0 whatever the method (EigenCAM ignores the objective)
    maps = maps.masked_fill(void.reshape(*void.shape, *([1] * (maps.ndim - 3))), 0)
    zero = ~maps.flatten(3).any(-1) & ~asked_zero.to(maps.device)  # (M, B, K): every value 0
    if getattr(m, "relu", False):
        zero = torch.zeros_like(zero)
    problems = torch.stack([bad_input.to(zero.device), ~all_finite(y).to(zero.device), zero.any(),
                            ~all_finite(maps).to(zero.device)])
    if not bool(problems.any()):
        return maps
    if bool(problems[0]):
        raise ClassContrastError(_NOT_FINITE)
    finite(y)
    if bool(problems[3]):
        raise ClassContrastError(f"{m.name} gave a map with NaN or infinite values{m.nonfinite_hint}; no map is "
                                 "returned")
    if bool(problems[2]):
        where = f" at layer {layer!r}" if layer else ""
        hint = ("another layer=... (one whose output depends on the image and reaches the logits), or "
                "method='gradient'") if layer else "checking that the model's logits depend on its input"
        warnings.warn(f"{m.name}{where} gave {int(zero.sum())} all-zero map(s) of {zero.numel()}: try {hint}",
                      ClassContrastWarning, stacklevel=3)
    return maps


def _unique_names(keys: list[str]) -> list[str]:
    """The result keys: each contrast keeps its own key; a key given again gets ``_2``, ``_3``... skipping every
    key another result has (a class named ``cat_2`` keeps ``foil:cat_2``; a second ``Foil("cat")`` then gets
    ``foil:cat_3``), so every requested result is returned under a key of its own."""
    taken = set(keys)
    out: list[str] = []
    for k in keys:
        if k not in out:
            out.append(k)
            continue
        n = 2
        while f"{k}_{n}" in taken:
            n += 1
        out.append(f"{k}_{n}")
        taken.add(out[-1])
    return out
