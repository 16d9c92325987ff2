"""The KServe V1 protocol with contrasts: what a request may hold, checked before any work, and how answers are
written. No torch here.

A request is ``{"instances": [...], "parameters": {...}}``. An instance is an image, base64-encoded in any format
Pillow reads, as ``{"image_bytes": {"b64": ...}}`` (what KServe's and TF-Serving's clients send), ``{"data": ...}``
(TorchServe's) or the bare string. ``:predict`` takes ``top_k``; ``:explain`` takes ``method`` (a name or a list),
``contrasts`` (names, ``foil:NAME``), ``targets`` (class names or indices, for every instance) or ``top_k`` (default
1: the top class), ``maps`` (``input``, ``layer`` or ``none``), ``map_format`` (``b64`` or ``list``) and the methods'
options by name. Anything else is a 400 naming it.

A map is answered as ``{"shape": [...], "dtype": "float32", "b64": "<little-endian bytes>"}`` (``map_format="b64"``)
or as nested lists.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ClassContrastError

MAPS = ("input", "layer", "none")
MAP_FORMATS = ("b64", "list")
PREDICT_KEYS = ("top_k",)
EXPLAIN_KEYS = ("method", "contrasts", "targets", "top_k", "maps", "map_format")
MAX_TOP_K = 1000  # a request asks for at most this many classes


class RequestError(ClassContrastError):
    """A request the server refuses: its HTTP status and one line saying why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ExplainSpec:
    """What ``:explain`` was asked, checked: the methods, contrasts (as given: names or ``foil:NAME``), the targets
    (class names or indices for every instance; None: the top ``top_k``), the maps kept and their format, and the
    methods' options. Requests with equal specs but for ``map_format`` can share a batch."""

    methods: tuple[str, ...] = ("gradcam",)
    contrasts: tuple[str, ...] = ("weighted",)
    targets: tuple[int | str, ...] | None = None
    top_k: int = 1
    maps: str = "input"
    map_format: str = "b64"
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)


def split_body(body: Any) -> tuple[list[Any], dict[str, Any]]:
    """A request body's instances (a non-empty list) and parameters (an object), checked."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object with 'instances'")
    unknown = sorted(set(body) - {"instances", "parameters", "id", "inputs"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r} in the request (expected 'instances' and 'parameters')")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list of images")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError("'parameters' must be a JSON object")
    return instances, parameters


def image_bytes(instance: Any, i: int) -> bytes:
    """Instance ``i``'s encoded image bytes (see the module docstring)."""
    text = instance
    if isinstance(instance, dict):
        if isinstance(instance.get("image_bytes"), dict):
            text = instance["image_bytes"].get("b64")
        elif "data" in instance:
            text = instance["data"]
        elif "b64" in instance:
            text = instance["b64"]
        else:
            raise RequestError(f"instance {i}: expected {{'image_bytes': {{'b64': ...}}}} or {{'data': ...}}, got "
                               f"the keys {', '.join(map(repr, instance)) or 'none'}")
    if not isinstance(text, str) or not text:
        raise RequestError(f"instance {i}: the image must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"instance {i}: not valid base64 ({e})") from e


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"parameters.{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _names(value: Any, name: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise RequestError(f"parameters.{name} must be a name or a non-empty list of names, got {value!r}")
    return tuple(values)


def predict_request(body: Any) -> tuple[list[bytes], int]:
    """(the instances' image bytes, top_k) of a ``:predict`` body."""
    instances, parameters = split_body(body)
    unknown = sorted(set(parameters) - set(PREDICT_KEYS))
    if unknown:
        raise RequestError(f"unknown parameter {unknown[0]!r} for :predict (it takes top_k)")
    top_k = _int(parameters.get("top_k", 5), "top_k", 1, MAX_TOP_K)
    return [image_bytes(x, i) for i, x in enumerate(instances)], top_k


def explain_request(body: Any, methods: Callable[[str], tuple[str, Sequence[str]] | None]
                    ) -> tuple[list[bytes], ExplainSpec]:
    """(the instances' image bytes, the checked spec) of an ``:explain`` body; ``methods(name)``: a method's
    registered name and option names, None for no such method (a 400, as an option none of the asked methods has)."""
    instances, p = split_body(body)
    found = [(m, methods(m)) for m in _names(p.get("method", "gradcam"), "method")]
    for m, known in found:
        if known is None:
            raise RequestError(f"unknown method {m!r}")
    names = tuple(known[0] for _, known in found if known is not None)
    accepted = {o for _, known in found if known is not None for o in known[1]}
    options = {k: v for k, v in p.items() if k not in EXPLAIN_KEYS}
    for k, v in options.items():
        if k not in accepted:
            raise RequestError(f"unknown parameter {k!r}: not an :explain parameter nor an option of "
                               f"{', '.join(names)}")
        if not _plain_value(v):
            raise RequestError(f"parameters.{k} must be a number, a string, a boolean or a list of them")
    targets = p.get("targets")
    if targets is not None:
        items = targets if isinstance(targets, list) else [targets]
        if not items or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in items):
            raise RequestError(f"parameters.targets must be class names or indices, got {targets!r}")
        targets = tuple(items)
    maps, fmt = p.get("maps", "input"), p.get("map_format", "b64")
    if maps not in MAPS:
        raise RequestError(f"parameters.maps must be one of {', '.join(MAPS)}, got {maps!r}")
    if fmt not in MAP_FORMATS:
        raise RequestError(f"parameters.map_format must be one of {', '.join(MAP_FORMATS)}, got {fmt!r}")
    spec = ExplainSpec(names, _names(p.get("contrasts", "weighted"), "contrasts"), targets,
                       _int(p.get("top_k", 1), "top_k", 1, MAX_TOP_K), maps, fmt,
                       tuple(sorted((k, _hashable(v)) for k, v in options.items())))
    return [image_bytes(x, i) for i, x in enumerate(instances)], spec


def _plain_value(v: Any) -> bool:
    if isinstance(v, list):
        return all(isinstance(x, (int, float, str, bool)) for x in v)
    return isinstance(v, (int, float, str, bool))


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def encode_map(a: np.ndarray, fmt: str) -> Any:
    """A map as the answer carries it: little-endian float32 bytes in base64 with its shape, or nested lists."""
    values = np.ascontiguousarray(a, dtype="<f4")
    if fmt == "list":
        return values.tolist()
    return {"shape": list(values.shape), "dtype": "float32", "b64": base64.b64encode(values.tobytes()).decode()}


def decode_map(m: Mapping[str, Any]) -> np.ndarray:
    """A b64 map of an answer back to an array (what a client does)."""
    return np.frombuffer(base64.b64decode(m["b64"]), dtype="<f4").reshape(m["shape"])


def plain(value: Any, fmt: str) -> Any:
    """A row's value as JSON: arrays as maps (`encode_map`), NumPy scalars as numbers, dicts and lists within."""
    if isinstance(value, np.ndarray):
        return encode_map(value, fmt)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v, fmt) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, fmt) for v in value]
    return value


__all__ = ["EXPLAIN_KEYS", "MAPS", "MAP_FORMATS", "ExplainSpec", "RequestError", "decode_map", "encode_map",
           "explain_request", "image_bytes", "plain", "predict_request", "split_body"]
