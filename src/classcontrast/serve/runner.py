"""A served model: requests' images decoded and preprocessed as ``cc.load_image`` + the bundle's transform do, then
predicted or explained by the library's own calls — concurrent ``:explain`` requests asking the same thing run as
one batch (`Batcher`), so a burst costs a few forward and backward passes, not one each."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import ClassContrastError
from ..scale.stage import by_size
from .protocol import ExplainSpec, RequestError, plain


class Cancelled(Exception):
    """Every request of a batch was given up by its client: the work stopped."""


@dataclass
class _Pending:
    """One request waiting in a batch: its inputs, whether its client gave it up, then its answer or its error."""

    inputs: list[torch.Tensor]
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Batcher:
    """Runs concurrent requests with the same key as one call of ``run(key, inputs, wanted)`` (which returns one
    result per input; ``wanted()`` says whether any request of the batch is still wanted). The first request of a key
    waits up to ``wait_ms`` for others — at most ``max_batch`` inputs together — then runs those still wanted; the
    others wait for their share. ``max_batch=1`` runs every request alone."""

    def __init__(self, run: Callable[[Any, list[torch.Tensor], Callable[[], bool]], list[Any]], max_batch: int = 16,
                 wait_ms: float = 5.0) -> None:
        self.run, self.max_batch, self.wait = run, max_batch, wait_ms / 1000
        self._lock = threading.Lock()
        self._open: dict[Any, list[_Pending]] = {}
        self.observe: Callable[[int], None] = lambda n: None  # told the inputs of every call made (/metrics)

    def submit(self, key: Any, inputs: list[torch.Tensor], cancelled: threading.Event | None = None) -> list[Any]:
        """This request's results, once its batch has run (its error, raised here, when it failed); ``cancelled``
        set: its client gave it up (it is left out of a batch not yet run, and a batch no one wants stops)."""
        me = _Pending(inputs, cancelled or threading.Event())
        with self._lock:
            group = self._open.get(key)
            leader = group is None or sum(len(p.inputs) for p in group) + len(inputs) > self.max_batch
            if group is None or leader:
                group = self._open[key] = [me]
            else:
                group.append(me)
        if leader:
            self._lead(key, group)
        me.done.wait()
        if me.error is not None:
            raise me.error
        return list(me.result)

    def _lead(self, key: Any, group: list[_Pending]) -> None:
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline and sum(len(p.inputs) for p in group) < self.max_batch:
            time.sleep(min(0.001, self.wait))
        with self._lock:
            if self._open.get(key) is group:
                del self._open[key]
        for p in group:
            if p.cancelled.is_set():
                p.error = Cancelled("the client gave the request up")
                p.done.set()
        group = [p for p in group if not p.cancelled.is_set()]
        if not group:
            return
        inputs = [x for p in group for x in p.inputs]
        self.observe(len(inputs))
        try:
            results = self.run(key, inputs, lambda: not all(p.cancelled.is_set() for p in group))
        except BaseException as e:  # every request of the batch gets the error
            for p in group:
                p.error = e
                p.done.set()
            return
        start = 0
        for p in group:
            p.result, start = results[start : start + len(p.inputs)], start + len(p.inputs)
            p.done.set()


class ServedModel:
    """One model the server answers for: its bundle (moved to ``device``), its decoding, predictions and
    explanations; ``max_batch`` / ``wait_ms``: the micro-batching of ``:explain``."""

    def __init__(self, name: str, bundle: Any, *, max_batch: int = 16, wait_ms: float = 5.0) -> None:
        self.name, self.bundle = name, bundle
        self.batcher = Batcher(self._explain_inputs, max_batch, wait_ms)

    def inputs(self, blobs: Sequence[bytes]) -> list[torch.Tensor]:
        """Each image decoded (the reader's pixel budget) and preprocessed: (C, *S) on the model's device."""
        from ..data.images import load_image_bytes
        from ..evaluation.runner import model_device

        device = model_device(self.bundle.model)
        out = []
        for i, blob in enumerate(blobs):
            try:
                image = load_image_bytes(blob, f"instance {i}")
                out.append(self.bundle.transform(image).to(device))
            except ClassContrastError as e:
                raise RequestError(str(e)) from e
        return out

    def predict(self, blobs: Sequence[bytes], top_k: int) -> list[dict[str, Any]]:
        """Per instance, its ``top_k`` classes and their probabilities (the bundle's head)."""
        from ..contrast_base import head_probabilities
        from ..engine import unwrap_model
        from ..state import predict

        answers = []
        for x in self.inputs(blobs):  # one at a time: an instance's numbers never depend on the others
            y = predict(unwrap_model(self.bundle), x[None]).double()
            if y.ndim != 2:
                raise RequestError(f"model {self.name!r} is not a classifier: :predict answers classes only")
            p = head_probabilities(y, self.bundle.head, 1)[0]
            top = p.topk(min(top_k, p.numel()))
            names = self.bundle.categories
            answers.append({"classes": [names[i] if names else str(i) for i in top.indices.tolist()],
                            "indices": top.indices.tolist(), "probabilities": top.values.tolist()})
        return answers

    def explain(self, blobs: Sequence[bytes], spec: ExplainSpec,
                cancelled: threading.Event | None = None) -> list[list[dict[str, Any]]]:
        """Per instance, the rows of its explanation (`Explanation.rows`), as JSON values; ``cancelled``: set when
        the client gives the request up (`Batcher.submit`)."""
        inputs = self.inputs(blobs)
        rows = self.batcher.submit(replace(spec, map_format="b64"), inputs, cancelled)  # the format: not the batch's
        return [[{k: plain(v, spec.map_format) for k, v in r.items()} for r in mine] for mine in rows]

    def _explain_inputs(self, spec: ExplainSpec, inputs: list[torch.Tensor],
                        wanted: Callable[[], bool]) -> list[list[dict[str, Any]]]:
        """One batch's rows per input: inputs of one size explained together, one call per method. The model's
        every forward pass in this thread first asks ``wanted()``: once no request of the batch is, the work stops
        (`Cancelled`) — the check is a forward pre-hook that exists only during the call."""
        out: list[list[dict[str, Any]]] = [[] for _ in inputs]
        me = threading.get_ident()

        def check(_module: Any, _args: Any) -> None:
            if threading.get_ident() == me and not wanted():
                raise Cancelled("the client gave the request up")

        handle = self.bundle.model.register_forward_pre_hook(check)
        try:
            for places in by_size(inputs):
                x = torch.stack([inputs[i] for i in places])
                for row in self._rows(x, spec):
                    out[places[row.pop("input")]].append(row)
        finally:
            handle.remove()
        return out

    def _rows(self, x: torch.Tensor, spec: ExplainSpec) -> list[dict[str, Any]]:
        from ..engine import explain, unwrap_model
        from ..methods import options_for
        from ..scale.stage import contrast_of
        from ..units import top_units

        options = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.options}
        rows: list[dict[str, Any]] = []
        try:
            contrasts = [contrast_of(c) for c in spec.contrasts]
            targets: Any = [list(spec.targets)] * len(x) if spec.targets is not None else (
                None if spec.top_k == 1 else top_units(unwrap_model(self.bundle), x, spec.top_k))
            for method in spec.methods:
                result = explain(self.bundle, x, method, contrasts, targets, **options_for(method, options))
                rows += result.rows(maps=spec.maps)
        except (ClassContrastError, TypeError, ValueError) as e:  # a request's bad class, contrast or option value
            raise RequestError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
        return rows


__all__ = ["Batcher", "Cancelled", "ServedModel"]
