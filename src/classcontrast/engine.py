"""The engine: one forward pass, one batched backward, any method × any contrasts × K targets."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import Tensor, nn

from .classes import class_indices, names_classes
from .contrasts import CONTRASTS, Contrast, Foil, get_contrast
from .detection import (
    Detections,
    DetectionUnits,
    capture,
    is_detection_output,
    is_single_stage_detector,
    is_torchvision_detector,
)
from .errors import ClassContrastError, ClassContrastWarning, first_line
from .explanation import Explanation, Explanations
from .methods import METHODS, LayerMethod, Method, get_method
from .outputs import is_binary, logits_of
from .state import frozen_eval
from .targets import Threshold, resolve_targets
from .units import RegionUnits, dense_logits, is_region_spec

ContrastSpec = str | Contrast
_CHUNK = 64  # objectives per batched backward pass


def unwrap_model(model: Any) -> nn.Module:
    """The ``nn.Module`` to explain: inside a [`ModelBundle`][classcontrast.models.bundle.ModelBundle], a
    ``DataParallel`` / ``DistributedDataParallel`` wrapper or a ``torch.compile``'d module (the eager
    module computes the same function, and its layer names are the ones users know)."""
    net = model if isinstance(model, nn.Module) else getattr(model, "model", model)
    if not isinstance(net, nn.Module):
        raise ClassContrastError(f"expected a torch nn.Module or a ModelBundle, got {type(model).__name__}")
    while True:
        if isinstance(net, nn.DataParallel) or type(net).__name__ == "DistributedDataParallel":
            net = net.module
        elif type(net).__name__ == "OptimizedModule" and isinstance(getattr(net, "_orig_mod", None), nn.Module):
            net = net._orig_mod
        else:
            return net


def check_input(x: Any, finite: bool = True) -> Tensor:
    """Validate an image batch: a finite floating-point (B, C, H, W) tensor (``finite=False``: the values
    are checked later, by the caller, without a device sync here)."""
    if not isinstance(x, Tensor):
        raise ClassContrastError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim == 3:
        raise ClassContrastError(f"x has shape {tuple(x.shape)}; add the batch dimension: x[None] or torch.stack")
    if x.ndim != 4:
        raise ClassContrastError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise ClassContrastError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0:
        raise ClassContrastError("x is an empty batch")
    if finite and not torch.isfinite(x).all():
        raise ClassContrastError(_NOT_FINITE)
    return x


_NOT_FINITE = "x contains NaN or Inf values"


def vjp(output: Tensor, inputs: list[Tensor], cotangents: Tensor, batched: bool = True) -> Iterator[list[Tensor]]:
    """Vector-Jacobian products of ``output`` (B, C) for R cotangents (R, B, C), chunk by chunk: each
    item holds, for every input, the gradients (R_chunk, ...) of the next cotangents, in order. Only
    ``torch.autograd.grad`` (no parameter gradients are ever computed); the consumer turns each chunk
    into maps before the next is computed, so memory does not grow with R.

    ``batched`` vectorises chunks of cotangents over one backward pass (``is_grads_batched``), falling
    back to one pass per cotangent where an operator has no batching rule.
    """
    r = cotangents.shape[0]
    if batched and r > 1:
        try:
            first = torch.autograd.grad(output, inputs, cotangents[:_CHUNK], retain_graph=True,
                                        is_grads_batched=True, allow_unused=True)
        except RuntimeError:
            first = None
        if first is not None:
            yield [_zeros_if_none(g, x, min(r, _CHUNK)) for g, x in zip(first, inputs, strict=True)]
            for i in range(_CHUNK, r, _CHUNK):
                gs = torch.autograd.grad(output, inputs, cotangents[i : i + _CHUNK], retain_graph=i + _CHUNK < r,
                                         is_grads_batched=True, allow_unused=True)
                yield [_zeros_if_none(g, x, len(cotangents[i : i + _CHUNK])) for g, x in zip(gs, inputs, strict=True)]
            return
    for i in range(r):
        # the scalar <output, cotangent> has the same gradient (J^T c, exactly: the product's backward
        # passes c on); written this way, autograd needs no grad_outputs checks (a 0.3 s import)
        gs = torch.autograd.grad((output * cotangents[i]).sum(), inputs, retain_graph=i < r - 1, allow_unused=True)
        yield [_zeros_if_none(g, x)[None] for g, x in zip(gs, inputs, strict=True)]


def low_rank(cotangents: Tensor) -> tuple[Tensor, Tensor] | None:
    """A smaller set of objectives spanning R cotangents (R, B, C), per image: (basis (r, B, C), coefficients
    (B, R, r)) with ``cotangents[i, b] = Σ_j coefficients[b, i, j] · basis[j, b]``, or None when r = R.

    Contrasts of the same images share few directions in logit space: top-3 targets × original, mean,
    max and weighted span only e_t1, e_t2, e_t3, p and 1 (weighted's α is (p − p_t e_t)/(1 − p_t)). For a
    method linear in the gradient, back-propagating the r basis vectors and combining the r maps gives
    every map exactly (up to rounding): 12 maps for the price of 5 backward passes. The basis is the SVD
    of each image's R × C cotangent matrix in float64, singular values below R·C-scaled machine precision
    dropped.
    """
    r_in, _, c = cotangents.shape
    if r_in < 2 or cotangents.dtype not in (torch.float32, torch.float64):
        return None
    m = cotangents.transpose(0, 1).double()  # (B, R, C)
    try:
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
    except RuntimeError:  # non-finite cotangents (NaN logits): no basis; the result's check says why
        return None
    tol = s.amax(-1, keepdim=True) * max(r_in, c) * torch.finfo(cotangents.dtype).eps
    rank = int((s > tol).sum(-1).max())
    if rank >= r_in:
        return None
    rank = max(rank, 1)
    basis = vh[:, :rank].transpose(0, 1).to(cotangents.dtype)  # (r, B, C)
    return basis, u[:, :, :rank] * s[:, None, :rank]


def _combine(coefficients: Tensor, maps: Tensor) -> Tensor:
    """Maps (R, B, ...) from the basis maps (r, B, ...) and the coefficients (B, R, r) of `low_rank`."""
    flat = maps.flatten(2).double()  # (r, B, N)
    out = torch.einsum("bij,jbn->ibn", coefficients, flat)
    return out.reshape(out.shape[0], *maps.shape[1:]).to(maps.dtype)


def _zeros_if_none(g: Tensor | None, x: Tensor, batch: int | None = None) -> Tensor:
    if g is not None:
        return g
    return torch.zeros((batch, *x.shape) if batch else x.shape, dtype=x.dtype, device=x.device)


_MODEL_ERRORS = (RuntimeError, AssertionError, TypeError)


def _model_failed(x: Tensor, e: BaseException) -> ClassContrastError:
    return ClassContrastError(f"the model failed on an input of shape {tuple(x.shape)} and dtype {x.dtype}: "
                              f"{first_line(e)}")


def _run(net: nn.Module, x: Tensor) -> Any:
    """The model's raw output for ``x``; a failing model is a one-line error."""
    try:
        return net(x)
    except _MODEL_ERRORS as e:
        raise _model_failed(x, e) from e


def _forward(net: nn.Module, x: Tensor, raw: Any = None) -> Tensor:
    """The model's logits for ``x``: (B, C) for a classifier, (B, C, H, W) at the input's size for a
    segmenter (see `classcontrast.units.dense_logits`); another output is a one-line error. ``raw``: the
    model's output when it already ran."""
    raw = _run(net, x) if raw is None else raw
    logits = logits_of(raw)
    if isinstance(logits, Tensor) and logits.ndim == 2:
        return logits
    dense = dense_logits(raw, x.shape[-2:])
    if dense is not None:
        return dense
    shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
    raise ClassContrastError(f"the model must return logits of shape (B, C) (a classifier) or (B, C, h, w) "
                             f"(a segmenter), got {shape}")


def _finite(logits: Tensor) -> Tensor:
    """Logits with a NaN or an infinity (an overflow: float16 or float32 beyond its range) give no contrast
    and no map: a one-line error naming the first image."""
    bad = ~torch.isfinite(logits.detach())
    if bool(bad.any()):
        image = int(bad.flatten(1).any(1).nonzero()[0])
        kind = "NaN" if bool(torch.isnan(logits.detach()[image]).any()) else "an infinite value"
        raise ClassContrastError(f"the model's logits contain {kind} for image {image} (an overflow in "
                                 f"{str(logits.dtype).removeprefix('torch.')}?): no contrast of them is defined; "
                                 "check the model and the input, or run the model in float64")
    return logits


def _warn_foils(contrasts: Sequence[Contrast], logits: Tensor, targets: Tensor,
                categories: Sequence[str] | None, unit: str = "image") -> None:
    """A foil equal to its target asks "why t rather than t": legal (the map is 0), but said once."""
    for c in contrasts:
        if not isinstance(c, Foil):
            continue
        same = (c.foils(logits)[:, None] == targets).nonzero()
        if len(same):
            b, j = (int(v) for v in same[0])
            cls = int(targets[b, j])
            name = f"{cls} ({categories[cls]})" if categories is not None and cls < len(categories) else str(cls)
            where = f"image {b}" if unit == "image" else f"{unit} {j} of image {b}"
            warnings.warn(
                f"foil {name} is also the target ({where}): "
                "'why t rather than t' is zero everywhere; explain other targets to avoid it",
                ClassContrastWarning, stacklevel=3,
            )


def _check_result(bad_input: Tensor, y: Tensor, maps: Tensor, contrasts: Sequence[Contrast], logits: Tensor,
                  t: Tensor, selected: Tensor | None, regions: RegionUnits | None, m: Method,
                  layer: str | None) -> None:
    """The checks of a call's result, with one device sync when all is well: an input or logits with NaN or
    inf are a one-line error (an overflow gives no contrast and no map); maps (M, B, K, ...) that are
    exactly 0 everywhere although nothing asked for that (a foil equal to its target, an empty region, a
    filler, ``relu=True``, a one-output model's class 0 are asked for) get one line naming the layer."""
    zero = (maps.flatten(3) == 0).all(-1)  # (M, B, K)
    if getattr(m, "relu", False):
        zero = torch.zeros_like(zero)
    if selected is not None:
        zero &= selected[None].to(zero.device)
    if regions is not None and regions.masks is not None:
        zero &= (regions.masks.flatten(2).sum(-1) > 0)[None].to(zero.device)
    for i, c in enumerate(contrasts):
        if isinstance(c, Foil):
            zero[i] &= c.foils(logits)[:, None].to(t.device) != t
    if logits.ndim == 2 and logits.shape[1] == 2:  # a one-output model's class 0: its logit is the constant 0
        zero &= ((t != 0) | logits[:, :1].detach().ne(0).any())[None].to(zero.device)
    problems = torch.stack([bad_input.to(zero.device), ~torch.isfinite(y.detach()).all().to(zero.device), zero.any()])
    if not bool(problems.any()):
        return
    if bool(problems[0]):
        raise ClassContrastError(_NOT_FINITE)
    _finite(y)
    where = f" at layer {layer!r}" if layer else ""
    hint = ("another layer=... (one whose output depends on the image and reaches the logits), or "
            "method='gradient'") if layer else "checking that the model's logits depend on its input"
    warnings.warn(f"{m.name}{where} gave {int(zero.sum())} all-zero map(s) of {zero.numel()}: try {hint}",
                  ClassContrastWarning, stacklevel=3)


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
        x: preprocessed images (B, C, H, W), on the model's device, any floating dtype.
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
        An [`Explanation`][classcontrast.explanation.Explanation] with ``maps`` (B, K, H, W), or
        [`Explanations`][classcontrast.explanation.Explanations] for a list of
        contrasts. All contrasts and targets come from ONE forward pass (one per path point or
        noisy copy for the sampling methods).

    Thread safety: any number of threads may call this on the same model at once; calls on one model
    are serialised and each leaves the model as it found it (see `classcontrast.state`).
    Works inside ``torch.no_grad()`` and ``torch.inference_mode()``.
    """
    net = unwrap_model(model)
    x = check_input(x, finite=False)  # checked with the logits and the maps at the end: one device sync a call
    bad_input = ~torch.isfinite(x).all()
    if layer is None and getattr(model, "layer", None) and isinstance(method, str) \
            and issubclass(METHODS.get(method.lower(), Method), LayerMethod):
        layer = model.layer  # a ModelBundle's own CAM layer
    m = get_method(method, layer=layer, relu=relu, **method_options)
    many = isinstance(contrast, (list, tuple))
    categories = None if isinstance(model, nn.Module) else getattr(model, "categories", None)
    if head is None:  # a ModelBundle's own (a module's `head` attribute is its classifier layer)
        head = "softmax" if isinstance(model, nn.Module) else getattr(model, "head", None) or "softmax"
        if is_single_stage_detector(net):  # RetinaNet, FCOS: each class its own sigmoid decision
            head = "sigmoid"
    if head not in ("softmax", "sigmoid"):
        raise ClassContrastError(f"head must be 'softmax' or 'sigmoid', got {head!r}")
    asked = [get_contrast(c).named(categories) for c in (contrast if many else [contrast])]
    contrasts = [c.for_head(head) for c in asked]
    if not contrasts:
        raise ClassContrastError("no contrast given")
    if head == "sigmoid" and {"original", "weighted"} <= {c.name for c in contrasts if c.name in CONTRASTS}:
        warnings.warn("with a sigmoid head 'weighted' is y_t, the same map as 'original'", ClassContrastWarning,
                      stacklevel=2)
    names = _unique_names([c.key(categories) for c in contrasts])
    if names_classes(targets):
        targets = class_indices(targets, categories, f"targets={targets!r}")
    n_images = x.shape[0]

    with frozen_eval(net):
        run = m.model_for_call(net)  # the model itself, or a private copy the method may change (LRP)
        if x.is_inference():  # a tensor made under inference_mode: a normal copy autograd can use
            x = x.clone()
        y: Tensor | None = None
        t = torch.empty(0)
        regions: RegionUnits | None = None
        objects: DetectionUnits | None = None
        detector = is_torchvision_detector(run)

        def resolve(y: Tensor) -> Tensor:
            nonlocal regions, head
            if head == "sigmoid" and is_binary(y):  # one output: softmax([0, y]) is already sigma(y)
                head = "softmax"
                contrasts[:] = [c.for_head(head) for c in asked]
            if y.ndim == 4:  # a segmenter: the units are regions of its per-pixel classification
                if isinstance(targets, Detections):
                    raise ClassContrastError("Detections targets need a detector; this is a segmentation model "
                                             "(use cc.Region)")
                regions = RegionUnits(targets, categories)
                return regions.resolve(y)
            if is_region_spec(targets):
                raise ClassContrastError("Region targets need a segmentation model (per-pixel logits, (B, C, h, w)); "
                                         f"this model returns {tuple(y.shape)}")
            if isinstance(targets, Detections):
                raise ClassContrastError("Detections targets need a detector (torchvision Faster R-CNN, DETR-style "
                                         f"models); this model returns logits of shape {tuple(y.shape)}")
            t = resolve_targets(targets, y, head)
            _warn_foils(contrasts, y, t, categories)
            return t

        if m.multipass:  # targets come from the images themselves, not from the sampled inputs
            with torch.no_grad(), ExitStack() as probe:
                got = capture(run, probe) if detector else None
                raw = _run(run, x)
                if got is not None or is_detection_output(raw):  # the images' own objects (DETR: fixed queries)
                    if got is not None:
                        raise ClassContrastError("the sampling methods (Integrated Gradients, SmoothGrad) are not "
                                                 "available for torchvision detectors: their proposals move with "
                                                 "the input; use a single-pass method")
                    objects = DetectionUnits(targets, run)
                    y, t = (v.detach() for v in objects.rows(raw, None, x))
                else:
                    y = _forward(run, x, raw).detach()
                    t = resolve(y)
        total: Tensor | None = None
        for p in m.passes(x):
            with ExitStack() as hooks:  # open until the pass's backward is done (LRP rules act there)
                try:  # record may run the model (e.g. to find the default layer)
                    rec = m.record(run, p.input, hooks)
                except _MODEL_ERRORS as e:
                    raise _model_failed(p.input, e) from e
                rec.state.update(p.state)
                got = capture(run, hooks) if detector else None
                raw = _run(run, rec.input)
                if got is not None or is_detection_output(raw):  # a detector: the units are its objects
                    objects = objects or DetectionUnits(targets, run)
                    logits, tp = objects.rows(raw, got, rec.input, p.rows)
                    _finite(logits)
                    if not m.multipass:
                        y, t = logits.detach(), tp
                else:
                    logits = _forward(run, rec.input, raw)
                if y is None:
                    y = logits.detach()
                    t = resolve(y)
                m.after_forward(rec)
                if objects is not None:
                    cot = objects.cotangents(contrasts, logits.detach(), t, p.rows, n_images)
                elif regions is not None:
                    cot = regions.cotangents(contrasts, logits.detach(), t, p.rows, n_images)
                else:
                    cs = [c.select(p.rows, n_images) for c in contrasts] if m.multipass else contrasts
                    yl, tr = logits.detach(), t[p.rows]
                    cot = torch.stack([c.grad(yl, tr[:, j]) for c in cs for j in range(t.shape[1])])
                reduced = None
                if m.linear and regions is None:  # objects: each image's K rows side by side, (R, B, K·C)
                    reduced = low_rank(cot.flatten(2) if objects is not None else cot)
                    if reduced is not None and objects is not None:
                        reduced = (reduced[0].reshape(len(reduced[0]), *cot.shape[1:]), reduced[1])
                vectorise = logits.device.type != "cpu" if batched is None else batched
                chunks = vjp(logits, rec.tensors, cot if reduced is None else reduced[0],
                             batched=vectorise and m.batched_vjp)
                try:
                    maps = torch.cat([m.compute(rec, grads).detach() for grads in chunks])
                except _MODEL_ERRORS as e:  # e.g. a rule's backward hook on a layer it cannot handle
                    raise ClassContrastError(f"method {m.name} failed in the backward pass of "
                                             f"{type(net).__name__}: {first_line(e)}{m.backward_hint}") from e
                if reduced is not None:
                    maps = _combine(reduced[1], maps)
                del logits
            if not m.multipass:
                total = maps
            else:
                total = maps.new_zeros((maps.shape[0], n_images, *maps.shape[2:])) if total is None else total
                total.index_add_(1, p.rows, maps)
    assert total is not None and y is not None
    k = t.shape[1]
    maps = total.reshape(len(contrasts), k, *total.shape[1:]).transpose(1, 2)  # (M, B, K, ...)
    normalize = None if isinstance(model, nn.Module) else getattr(model, "normalize", None)
    out = Explanations()
    units = regions.records(y, t) if regions is not None else objects.records(y, t) if objects is not None else None
    image_logits = y if regions is None else y.mean((-2, -1))  # a segmenter's: the mean over its pixels
    region_p = None if regions is None else regions.target_probabilities(y, t)
    selected = targets.selected(y, t, head) if isinstance(targets, Threshold) and regions is None else None
    if regions is not None:
        selected = regions.selected
    if objects is not None:  # per object: its own row; the Explanation's logits are the first object's
        image_logits, region_p, selected = y[:, 0], objects.probabilities(y, t, head), objects.selected
        _warn_foils(contrasts, image_logits, t, categories, "object")
    _check_result(bad_input, y, maps, contrasts, image_logits, t, selected, regions, m, rec.layer)
    for i, (name, c) in enumerate(zip(names, contrasts, strict=True)):
        out[name] = Explanation(
            maps=None, layer_maps=maps[i], targets=t, logits=image_logits, method=m.name,
            contrast=name, layer=rec.layer, options=m.options(), inputs=x,
            to_pixels=getattr(normalize, "inverse", None), categories=categories,
            foils=c.foils(image_logits) if isinstance(c, Foil) else None, size=tuple(x.shape[-2:]), objective=c,
            units=units, head=head,
            scores=regions.scores(c, y, t) if regions is not None else
            objects.object_scores(c, y, t) if objects is not None else None,
            target_probabilities=region_p, selected=selected,
        )
    return out if many else out[names[0]]


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
