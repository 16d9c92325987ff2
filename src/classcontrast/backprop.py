"""Back-propagation of many objectives at once: vector-Jacobian products chunk by chunk, and the low-rank
basis that lets contrasts of the same images share their backward passes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

_CHUNK = 64  # objectives per batched backward pass
_DENSE = 1 << 20  # logits this large take their cotangents as grad_outputs (see vjp)


def vjp(output: Tensor, inputs: list[Tensor], cotangents: Tensor, batched: bool = True) -> Iterator[list[Tensor]]:
    """Vector-Jacobian products of ``output`` (B, C) for R cotangents (R, B, C), chunk by chunk: each
    item holds, for every input, the gradients (R_chunk, ...) of the next cotangents, in order. Only
    ``torch.autograd.grad`` (no parameter gradients are ever computed); the consumer turns each chunk
    into maps before the next is computed, so memory does not grow with R.

    ``batched`` vectorises chunks of cotangents over one backward pass (``is_grads_batched``), falling
    back to one pass per cotangent where an operator has no batching rule.
    """
    # contiguous: a strided cotangent reaches backward hooks as a strided gradient, and zennit's LRP rules
    # then compute other relevance (a segmenter's per-pixel cotangents come from a moved axis)
    cotangents = cotangents.contiguous()
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
    dense = output.numel() >= _DENSE
    flat = None if dense else output.reshape(-1)  # (a copy when output is strided: only for the dot)
    for i in range(r):
        if dense:  # the cotangent passed on as it is (a segmenter's logits at every voxel: a product costs more)
            gs = torch.autograd.grad(output, inputs, cotangents[i].to(output.dtype), retain_graph=i < r - 1,
                                     allow_unused=True)
        else:  # the scalar <output, cotangent> has the same gradient (J^T c, exactly: the dot's backward passes c
            # on); written this way, autograd needs no grad_outputs checks (a 0.5 s import, once)
            assert flat is not None
            gs = torch.autograd.grad(torch.dot(flat, cotangents[i].reshape(-1).to(flat.dtype)), inputs,
                                     retain_graph=i < r - 1, allow_unused=True)
        yield [_zeros_if_none(g, x)[None] for g, x in zip(gs, inputs, strict=True)]


def low_rank(cotangents: Tensor) -> tuple[Tensor, Tensor] | None:
    """A smaller set of objectives spanning R cotangents (R, B, ...), per image: (basis (r, B, ...), coefficients
    (B, R, r)) with ``cotangents[i, b] = Σ_j coefficients[b, i, j] · basis[j, b]``, or None when r = R.

    Contrasts of the same images share few directions in logit space: top-3 targets × original, mean,
    max and weighted span only e_t1, e_t2, e_t3, p and 1 (weighted's α is (p − p_t e_t)/(1 − p_t)). For a
    method linear in the gradient, back-propagating the r basis vectors and combining the r maps gives
    every map exactly (up to rounding): 12 maps for the price of 5 backward passes. The basis is the SVD
    of each image's R × C cotangent matrix in float64, singular values below R·C-scaled machine precision
    dropped.
    """
    r_in, _, c = cotangents.shape[0], cotangents.shape[1], cotangents[0, 0].numel()
    if r_in < 2 or cotangents.dtype not in (torch.float32, torch.float64):
        return None
    m = cotangents.flatten(2).transpose(0, 1).double()  # (B, R, C): a unit's cotangent flattened (objects: K·C)
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
    return basis.reshape(rank, *cotangents.shape[1:]), u[:, :, :rank] * s[:, None, :rank]


def combine(coefficients: Tensor, maps: Tensor) -> Tensor:
    """Maps (R, B, ...) from the basis maps (r, B, ...) and the coefficients (B, R, r) of `low_rank`."""
    flat = maps.flatten(2).double()  # (r, B, N)
    out = torch.einsum("bij,jbn->ibn", coefficients, flat)
    return out.reshape(out.shape[0], *maps.shape[1:]).to(maps.dtype)


def _zeros_if_none(g: Tensor | None, x: Tensor, batch: int | None = None) -> Tensor:
    if g is not None:
        return g
    return torch.zeros((batch, *x.shape) if batch else x.shape, dtype=x.dtype, device=x.device)


__all__ = ["combine", "low_rank", "vjp"]
