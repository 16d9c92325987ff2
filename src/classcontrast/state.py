"""Model state during a call: calls are serialised per model and leave it exactly as they found it.

Guarantee (documented in the README): any number of threads may call [`explain`][classcontrast.engine.explain]
(and everything built on it) on the same model at once. Each call gets exactly the maps a lone call
gets, and the model ends as it was found (train/eval modes, ``requires_grad``, hooks, no ``.grad``),
however the calls interleave and whether or not they raise. Calls on different models run
concurrently.

How: a call holds a re-entrant lock for every module of the model it runs (locks taken in one global
order, so two calls sharing any submodule, e.g. a model and a wrapper around it, exclude each other
without deadlock). Inside the lock the model runs in eval mode with frozen parameters and is restored
in ``finally``. Gradient and inference mode are thread-local in torch, so they are switched for the
calling thread only.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .errors import ClassContrastError
from .outputs import logits_of

_REGISTRY = threading.Lock()
_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()


def _locks_for(model: nn.Module) -> list[threading.RLock]:
    """The locks of every module of ``model``, in one global order (by id)."""
    with _REGISTRY:
        locks = {}
        for m in model.modules():
            lock = _LOCKS.get(m)
            if lock is None:
                lock = _LOCKS[m] = threading.RLock()
            locks[id(lock)] = lock
    return [locks[k] for k in sorted(locks)]


@contextmanager
def exclusive(model: nn.Module) -> Iterator[None]:
    """Hold ``model`` for this thread: no other call through this module runs on any of its modules."""
    held: list[threading.RLock] = []
    try:
        for lock in _locks_for(model):
            lock.acquire()
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()


def check_not_inference(model: nn.Module) -> None:
    """A one-line error for a model whose tensors were created under ``torch.inference_mode()``."""
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if torch.nn.parameter.is_lazy(t):
            raise ClassContrastError(f"the model's tensor '{name}' is not initialised yet (a lazy module): run the "
                                     "model once on an input before explaining it")
        if t.is_inference():
            raise ClassContrastError(
                f"the model's tensor '{name}' was created under torch.inference_mode() and cannot be "
                "differentiated; create, load or move the model outside inference_mode (torch.no_grad() is fine)"
            )


@contextmanager
def frozen_eval(model: nn.Module, freeze: bool = True) -> Iterator[nn.Module]:
    """Run ``model`` exclusively, in eval mode, with parameters not requiring grad, then restore both.

    Eval mode keeps BatchNorm statistics fixed and makes per-image gradients independent; frozen
    parameters mean autograd never builds or computes parameter gradients. Both are restored in
    ``finally``, so the model is as it was even when the call raises. Inference mode is switched off
    and gradients on for the calling thread, so the call works inside ``torch.no_grad()`` and
    ``torch.inference_mode()``. ``freeze=False`` leaves ``requires_grad`` alone (for graph-free calls).
    """
    with exclusive(model):
        if freeze:
            check_not_inference(model)
        modes = [(m, m.training) for m in model.modules()]
        flags = [(p, p.requires_grad) for p in model.parameters()] if freeze else []
        try:
            model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            with torch.inference_mode(False), torch.enable_grad():
                yield model
        finally:
            for m, training in modes:
                m.training = training
            for p, flag in flags:
                p.requires_grad_(flag)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``x`` in eval mode, without a graph; the model's state restored."""
    with frozen_eval(model, freeze=False), torch.no_grad():
        y: torch.Tensor = logits_of(model(x))
        return y
