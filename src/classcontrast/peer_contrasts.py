r"""The contrastive targets other libraries ship, as contrasts: usable by every method, equal to the
originals (tested against pytorch-grad-cam and torch-cam).

* `Finer` — Finer-CAM as pytorch-grad-cam computes it (`FinerWeightedTarget`):
  $O = \sum_k p_k (y_t - \alpha y_k) / (\sum_k p_k + 10^{-9})$, gradient through $p$ too;
* `FinerMean` — Finer-CAM as torch-cam computes it: $O = y_t - \gamma \cdot \operatorname{mean}_k y_k$;
* `ContrastCAM` — Prabhushankar et al. 2020, "why P rather than Q": the cross-entropy towards Q,
  $O = -\log p_q$;
* `ReST` — pytorch-grad-cam's `ClassifierOutputReST`: $O = y_t - \mathrm{CE}(y, t) = 2 y_t - \log\sum_s e^{y_s}$.

Finer-CAM's references $k$ are, unless given, the ``k`` classes whose logits are closest to the target's
(the target excluded; ties as ``torch.topk`` breaks them, which is how torch-cam picks them;
pytorch-grad-cam's ``np.argsort`` gives the same classes unless two distances are exactly equal).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor

from .classes import class_indices, names_classes
from .contrast_base import Contrast, _one_hot, _pick, per_row
from .errors import ClassContrastError
from .text import count


def closest_classes(logits: Tensor, target: Tensor, k: int) -> Tensor:
    """(N, k) the classes whose logits are closest to each row's target logit, nearest first, target
    excluded."""
    c = logits.shape[1]
    if not 1 <= k < c:
        raise ClassContrastError(f"Finer-CAM needs 1 <= k < the number of classes ({c}), got k={k}")
    y = logits.detach()
    distance = (y - y.gather(1, target[:, None])).abs().scatter(1, target[:, None], float("inf"))
    return distance.topk(k, dim=1, largest=False).indices


class _References(Contrast):
    """A contrast against reference classes: ``k`` automatic ones, or given (names with a ModelBundle)."""

    def __init__(self, k: int = 3, references: Sequence[int] | Sequence[str] | Tensor | None = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ClassContrastError(f"{type(self).__name__} needs a whole number k >= 1, got {k!r}")
        self.k = k
        self.references = references

    def named(self, categories: Sequence[str] | None) -> Contrast:
        if self.references is None or not names_classes(self.references):
            return self
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.references = class_indices(self.references, categories, f"{type(self).__name__} references")
        return new

    def refs(self, logits: Tensor, target: Tensor) -> Tensor:
        """(N, k) the reference classes of each row."""
        if self.references is None:
            return closest_classes(logits, target, self.k)
        if names_classes(self.references):
            raise ClassContrastError(f"{type(self).__name__} references {self.references!r} name classes: explain a "
                                     "ModelBundle (it knows the class names) or give class indices")
        r = torch.as_tensor(self.references, device=logits.device).long()
        r = r.reshape(1, -1).expand(logits.shape[0], -1) if r.ndim <= 1 else r
        if r.shape[0] != logits.shape[0]:
            raise ClassContrastError(f"{type(self).__name__} has {count(r.shape[0], 'reference row')} for "
                                     f"{count(logits.shape[0], 'row')}")
        if ((r < 0) | (r >= logits.shape[1])).any():
            raise ClassContrastError(f"{type(self).__name__} reference out of range for {logits.shape[1]} classes")
        if (r == target[:, None]).any():
            raise ClassContrastError(f"{type(self).__name__} references contain the target class")
        return r


class Finer(_References):
    r"""Finer-CAM, pytorch-grad-cam's form (`FinerCAM` with `FinerWeightedTarget`):

    $$O = \frac{\sum_k p_k\,(y_t - \alpha\, y_k)}{\sum_k p_k + 10^{-9}},$$

    $p$ the softmax over all classes, the gradient taken through $p$ as well (as autograd does there),
    $k$ the references: the ``k`` classes of closest logit, or ``references``.
    """

    name = "finer"
    EPS = 1e-9

    def __init__(self, k: int = 3, alpha: float = 1.0,
                 references: Sequence[int] | Sequence[str] | Tensor | None = None) -> None:
        super().__init__(k, references)
        self.alpha = float(alpha)

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        r = self.refs(logits, target)
        p = torch.softmax(logits, 1).gather(1, r)
        y_t = logits.gather(1, target[:, None])
        return (p * (y_t - self.alpha * logits.gather(1, r))).sum(1) / (p.sum(1) + self.EPS)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        # O = N / (S + eps), N = Σ_k p_k (y_t − α y_k), S = Σ_k p_k, ∂p_k/∂y_j = p_k (δ_kj − p_j)
        y = logits.detach()
        r = self.refs(y, target)
        p_all = torch.softmax(y, 1)
        p = p_all.gather(1, r)
        y_t = y.gather(1, target[:, None])
        d = y_t - self.alpha * y.gather(1, r)  # (N, k)
        num, den = (p * d).sum(1, keepdim=True), p.sum(1, keepdim=True) + self.EPS
        in_refs = torch.zeros_like(y).scatter(1, r, p * d)  # p_j (y_t − α y_j) at the references
        dn = in_refs - p_all * num - self.alpha * torch.zeros_like(y).scatter(1, r, p) \
            + (den - self.EPS) * _one_hot(target, y.shape[1], y)
        ds = torch.zeros_like(y).scatter(1, r, p) - p_all * (den - self.EPS)
        return (dn * den - num * ds) / den**2

    def __repr__(self) -> str:
        return f"Finer(k={self.k}, alpha={self.alpha}, references={self.references!r})"


class FinerMean(_References):
    r"""Finer-CAM, torch-cam's form (`torchcam.methods.FinerCAM`): $O = y_t - \gamma \cdot \frac{1}{k}
    \sum_k y_k$, the references the ``k`` classes of closest logit (target excluded) or ``references``."""

    name = "finer_mean"

    def __init__(self, k: int = 3, gamma: float = 0.6,
                 references: Sequence[int] | Sequence[str] | Tensor | None = None) -> None:
        super().__init__(k, references)
        self.gamma = float(gamma)

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        r = self.refs(logits, target)
        return logits.gather(1, target[:, None])[:, 0] - self.gamma * logits.gather(1, r).mean(1)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        r = self.refs(logits, target)
        weights = torch.full(r.shape, self.gamma / r.shape[1], dtype=logits.dtype, device=logits.device)
        return _one_hot(target, logits.shape[1], logits) - torch.zeros_like(logits).scatter_add(1, r, weights)

    def __repr__(self) -> str:
        return f"FinerMean(k={self.k}, gamma={self.gamma}, references={self.references!r})"


class ContrastCAM(Contrast):
    r"""Prabhushankar et al. (2020), "why P rather than Q": the cross-entropy loss towards the contrast
    class $q$, $O = \mathrm{CE}(y, q) = \log\sum_s e^{y_s} - y_q$, so $\partial O/\partial y = p - e_q$.
    The target only picks the row (P is what the model predicts); ``q`` is a class index or, with a
    ModelBundle, a name. The authors apply GradCAM's ReLU to the map (``relu=True``)."""

    name = "contrast_cam"
    spatial = True

    def __init__(self, q: int | str | Sequence[int] | Tensor) -> None:
        if isinstance(q, (bool, float)):
            raise ClassContrastError(f"ContrastCAM needs a class index or a class name, got {q!r}")
        self.q = q

    def named(self, categories: Sequence[str] | None) -> Contrast:
        return self if not names_classes(self.q) else ContrastCAM(class_indices(self.q, categories, "ContrastCAM"))

    def key(self, categories: Sequence[str] | None = None) -> str:
        q = self.q
        if isinstance(q, (list, tuple, Tensor)):
            return self.name
        i = operator.index(q) if hasattr(q, "__index__") else None  # an int, a numpy integer
        if i is not None and categories is not None and 0 <= i < len(categories):
            return f"{self.name}:{categories[i]}"
        return f"{self.name}:{q}"

    def _q(self, logits: Tensor) -> Tensor:
        if names_classes(self.q):
            raise ClassContrastError(f"ContrastCAM({self.q!r}) names a class: explain a ModelBundle or give the index")
        q = torch.as_tensor(self.q, device=logits.device).long().reshape(-1)
        q = q.expand(logits.shape[0]) if q.numel() == 1 else q
        if q.numel() != logits.shape[0] or ((q < 0) | (q >= logits.shape[1])).any():
            raise ClassContrastError(f"ContrastCAM class {self.q!r} is out of range or not one per row")
        return q

    def select(self, rows: Tensor, n_images: int) -> Contrast:
        q = torch.as_tensor(self.q).long().reshape(-1)
        return self if q.numel() == 1 else ContrastCAM(q.to(rows.device)[rows])

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return torch.logsumexp(logits, 1) - _pick(logits, per_row(self._q(logits), target))

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        q = per_row(self._q(logits), target)
        return torch.softmax(logits.detach(), 1) - _one_hot(q, logits.shape[1], logits)

    def __repr__(self) -> str:
        return f"ContrastCAM({self.q!r})"


class ReST(Contrast):
    r"""pytorch-grad-cam's `ClassifierOutputReST` (arXiv 2501.06261): the logit minus the
    cross-entropy, $O = y_t - \mathrm{CE}(y, t) = 2y_t - \log\sum_s e^{y_s}$, so
    $\partial O/\partial y = 2e_t - p$."""

    name = "rest"
    spatial = True

    def score(self, logits: Tensor, target: Tensor) -> Tensor:
        return 2 * _pick(logits, target) - torch.logsumexp(logits, 1)

    def grad(self, logits: Tensor, target: Tensor) -> Tensor:
        return 2 * _one_hot(target, logits.shape[1], logits) - torch.softmax(logits.detach(), 1)
