r"""Contrasts: which scalar of the logits $y$ an explanation back-propagates.

Every contrast is a tiny object with two functions of the logits ``y`` (N, C) and one target class
per row ``t`` (N,):

* ``score(y, t)`` -> (N,) the scalar objective $O$, differentiable;
* ``grad(y, t)`` -> (N, C) its exact gradient $\partial O / \partial y$ in closed form.

The explanation engine back-propagates ``grad`` from the logits as ``grad_outputs`` (one
vector-Jacobian product), so every contrast costs one backward pass, never C per-class maps.
For any method linear in the back-propagated gradient, ``grad`` is exactly the linear combination of
per-class maps that defines the contrast, e.g. ``weighted`` = $\phi_t - \sum_{s\ne t}\alpha_s\phi_s$.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .classes import class_indices, names_classes
from .contrast_base import Contrast as Contrast  # re-exported: the contrasts' base class
from .contrast_base import _at_target, _one_hot, _others, _pick, argmax, per_row
from .errors import ClassContrastError, did_you_mean
from .peer_contrasts import Finer, FinerMean, ReST
from .text import count


class Original(Contrast):
    r"""The logit of the target: $O = y_t$, so $\phi = \phi_t$ (no contrast)."""

    name = "original"
    spatial = True

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return _pick(logits, target)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        return _one_hot(target, logits.shape[1], logits)

    def score_all(self, logits: Tensor) -> Tensor:
        return logits


class Mean(Contrast):
    r"""Target against the mean of the others: $O = y_t - \frac{1}{C-1}\sum_{s\ne t} y_s$.

    ``over_all_classes=True`` divides by $C$ instead, as the study's CUB code does
    (spec A.2); the default is the true mean over the $C-1$ other classes.
    """

    name = "mean"
    spatial = True

    def __init__(self, over_all_classes: bool = False) -> None:
        self.over_all_classes = over_all_classes

    def _c(self, num_classes: int) -> float:
        return 1.0 / (num_classes if self.over_all_classes else num_classes - 1)

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        y_t = _pick(logits, target)
        return y_t - self._c(logits.shape[1]) * (logits.sum(1) - y_t)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        out = torch.full_like(logits, -self._c(logits.shape[1]), memory_format=torch.contiguous_format)
        return _at_target(out, target, 1)  # 1 at the target, -1/(C-1) elsewhere

    def score_all(self, logits: Tensor) -> Tensor:
        return logits - self._c(logits.shape[1]) * (logits.sum(1, keepdim=True) - logits)

    def __repr__(self) -> str:
        return f"Mean(over_all_classes={self.over_all_classes})"


class Max(Contrast):
    r"""Target against the strongest other class: $O = y_t - y_{s^*}$,
    $s^* = \arg\max_{s\ne t} y_s$ of the current input (re-chosen at every call)."""

    name = "max"
    spatial = True

    def runner_up(self, logits: Tensor, target: Tensor) -> Tensor:
        """$s^*$ per row."""
        return argmax(_others(logits.detach(), target))

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return _pick(logits, target) - _pick(logits, self.runner_up(logits, target))

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        s = self.runner_up(logits, target).unsqueeze(1)
        minus = torch.full((), -1, dtype=logits.dtype, device=logits.device).expand(s.shape)
        return _one_hot(target, logits.shape[1], logits).scatter_add_(1, s, minus)  # e_t - e_s*

    def score_all(self, logits: Tensor) -> Tensor:
        top2 = logits.topk(2, dim=1)
        is_top = torch.arange(logits.shape[1], device=logits.device)[None] == top2.indices[:, :1]
        return logits - torch.where(is_top, top2.values[:, 1:2], top2.values[:, :1])


class Weighted(Contrast):
    r"""The paper's weighted contrast, $\phi_t - \sum_{s\ne t}\alpha_s\phi_s$ with
    $\alpha_s = e^{y_s}/\sum_{k\ne t} e^{y_k}$.

    It is exactly the gradient of $O = y_t - \log\sum_{s\ne t} e^{y_s} = \operatorname{logit}(p_t)$,
    which we use: it is numerically stable and does not vanish when $p_t$ rounds to 1 in float32
    (back-propagating $p_t$ gives $p_t(1-p_t)$ times the same map; see ``Probability``).
    """

    name = "weighted"
    spatial = True

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return _pick(logits, target) - torch.logsumexp(_others(logits, target), 1)

    def for_head(self, head: str) -> Contrast:
        return SigmoidLogit() if head == "sigmoid" else self

    def alpha(self, logits: Tensor, target: Tensor) -> Tensor:
        """$\\alpha_s$ (N, C), zero at the target."""
        return torch.softmax(_others(logits.detach(), target), 1)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        return _at_target(self.alpha(logits, target).neg_(), target, 1)  # e_t - α (α_t = 0)

    def score_all(self, logits: Tensor) -> Tensor:
        # log Σ_{s≠t} e^{y_s} = logsumexp(y) + log(1 - p_t): exact except for the most probable class,
        # where 1 - p_t may round to 0; that one column is computed with the class masked out.
        lse = torch.logsumexp(logits, 1, keepdim=True)
        others = lse + torch.log1p(-torch.exp(logits - lse).clamp(max=1.0))
        top = logits.argmax(1)
        exact = torch.logsumexp(_others(logits, top), 1)
        others = others.scatter(1, top[:, None], exact[:, None])
        return logits - others


class Probability(Contrast):
    r"""The softmax probability of the target, $O = p_t$, as the paper and the study compute it.

    $\partial p_t/\partial y = p_t(e_t - p)$, so the map is $p_t(1-p_t)$ times ``weighted``;
    it vanishes when $p_t$ rounds to 1.
    """

    name = "probability"
    spatial = True

    def for_head(self, head: str) -> Contrast:
        return SigmoidProbability() if head == "sigmoid" else self

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return _pick(torch.softmax(logits, 1), target)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        p = torch.softmax(logits.detach(), 1)
        p_t = p.gather(1, target.unsqueeze(1))
        return p_t * (_one_hot(target, logits.shape[1], logits) - p)

    def score_all(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, 1)


class SigmoidLogit(Original):
    r"""`weighted` for a sigmoid (multi-label) head: each class is its own decision with probability
    $\sigma(y_t)$, whose logit is $y_t$ itself: $O = \operatorname{logit}(\sigma(y_t)) = y_t$ — the same
    map as `original` (the other classes do not compete), computed by it."""

    name = "weighted"


class SigmoidProbability(Contrast):
    r"""`probability` for a sigmoid (multi-label) head: $O = \sigma(y_t)$, so
    $\partial O/\partial y = \sigma(y_t)(1-\sigma(y_t))\,e_t$: $\sigma(1-\sigma)$ times `original`."""

    name = "probability"
    spatial = True

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return torch.sigmoid(_pick(logits, target))

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        s = torch.sigmoid(logits.detach().gather(1, target.unsqueeze(1)))
        return s * (1 - s) * _one_hot(target, logits.shape[1], logits)


class Foil(Contrast):
    r"""Why the target rather than the foil $s$: $O = y_t - y_s$.

    ``foil`` is one class for every image, or a sequence / 1-D tensor with one foil per image: class
    indices, or class names (``Foil("Egyptian cat")``) when the model is a ModelBundle, which knows its
    classes. Its result is keyed ``"foil:<class name>"`` (``ex["foil:Egyptian cat"]``; ``ex["foil"]``
    also finds a call's only foil).
    """

    name = "foil"
    spatial = True

    def __init__(self, foil: int | str | Sequence[int] | Sequence[str] | Tensor) -> None:
        if isinstance(foil, (bool, float)):
            raise ClassContrastError(f"Foil needs a class index or a class name, got {foil!r}")
        if not isinstance(foil, (str, int)) and not names_classes(foil):  # a tensor, an array, a list of indices
            try:
                kind = torch.as_tensor(foil).dtype
            except (TypeError, ValueError, RuntimeError) as e:
                raise ClassContrastError(f"Foil needs class indices or class names, got {foil!r}") from e
            if kind.is_floating_point or kind.is_complex or kind == torch.bool:
                raise ClassContrastError(f"Foil needs class indices (integers) or class names, got {foil!r}")
        self.foil = foil

    def named(self, categories: Sequence[str] | None) -> Contrast:
        """``Foil("Egyptian cat")`` resolved with the model's class names (a one-line error without)."""
        if not names_classes(self.foil):
            return self
        return Foil(class_indices(self.foil, categories, f"Foil({self.foil!r})"))

    def key(self, categories: Sequence[str] | None = None) -> str:
        """``foil:<class name>`` (``foil:<index>`` without class names) for one foil class; ``foil``
        for one foil per image."""
        f = self.foil
        one: object
        if isinstance(f, Tensor):
            one = int(f.reshape(-1)[0]) if f.numel() == 1 else None
        else:
            one = f if not isinstance(f, (list, tuple)) else (f[0] if len(f) == 1 else None)
        if one is None:
            return "foil"
        if isinstance(one, int) and categories is not None and 0 <= one < len(categories):
            return f"foil:{categories[one]}"
        return f"foil:{one}"

    def foils(self, logits: Tensor) -> Tensor:
        """The foil per row as a (N,) long tensor on the logits' device, validated."""
        n, c = logits.shape[:2]
        if names_classes(self.foil):
            raise ClassContrastError(f"Foil({self.foil!r}) names a class: explain a ModelBundle (it knows the "
                                     "class names) or give the class index")
        f = torch.as_tensor(self.foil, device=logits.device).long().reshape(-1)
        if f.numel() == 1:
            f = f.expand(n)
        elif f.numel() != n:
            raise ClassContrastError(f"Foil has {count(f.numel(), 'class', 'classes')} for {count(n, 'image')}; "
                                     "give one, or one per image")
        bad = f[(f < 0) | (f >= c)]
        if bad.numel():
            raise ClassContrastError(
                f"foil class {int(bad[0])} is out of range for a model with {c} classes (0..{c - 1})"
            )
        return f

    def select(self, rows: Tensor, n_images: int) -> Contrast:
        f = torch.as_tensor(self.foil).long().reshape(-1)
        if f.numel() == 1:
            return self
        if f.numel() != n_images:
            raise ClassContrastError(f"Foil has {count(f.numel(), 'class', 'classes')} for "
                                     f"{count(n_images, 'image')}; give one, or one per image")
        return Foil(f.to(rows.device)[rows])

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return _pick(logits, target) - _pick(logits, per_row(self.foils(logits), target))

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        c = logits.shape[1]
        return _one_hot(target, c, logits) - _one_hot(per_row(self.foils(logits), target), c, logits)

    def score_all(self, logits: Tensor) -> Tensor:
        return logits - logits.gather(1, self.foils(logits)[:, None])

    def __repr__(self) -> str:
        return f"Foil({self.foil!r})"


CONTRASTS: dict[str, type[Contrast]] = {
    c.name: c for c in (Original, Mean, Max, Weighted, Probability, Finer, FinerMean, ReST)
}


def get_contrast(spec: str | Contrast) -> Contrast:
    """A contrast from its name (``"original"``, ``"mean"``, ``"max"``, ``"weighted"``,
    ``"probability"``, and the peers' ``"finer"``, ``"finer_mean"``, ``"rest"`` with their defaults) or a
    [`Contrast`][classcontrast.contrast_base.Contrast] instance (e.g. ``Foil(3)``, ``ContrastCAM("cup")``)."""
    if isinstance(spec, Contrast):
        return spec
    if isinstance(spec, str) and spec.lower() in CONTRASTS:
        return CONTRASTS[spec.lower()]()
    if isinstance(spec, str) and spec.lower() == "foil":
        raise ClassContrastError("the 'foil' contrast needs a class: use Foil(s) (or --foil S on the command line)")
    if isinstance(spec, str) and spec.lower() == "contrast_cam":
        raise ClassContrastError("the 'contrast_cam' contrast needs a class Q: use ContrastCAM(q) "
                                 "(or --contrast-cam Q)")
    raise ClassContrastError(
        f"unknown contrast {spec!r}{did_you_mean(str(spec), CONTRASTS)} (contrasts: {', '.join(CONTRASTS)}, or Foil(s))"
    )
