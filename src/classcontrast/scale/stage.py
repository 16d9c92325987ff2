"""A batch of decoded images explained as table rows: the callable class Ray Data's ``map_batches`` runs in its
workers (the actor pattern: the model is loaded once per worker, on its GPU when the worker has one), which the local
engine calls in-process too. Nothing here imports Ray."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ClassContrastError
from .table import MAP_DTYPES, MAP_LEVELS, flat, to_table

IMAGE_COLUMNS = ("id", "path", "stamp", "label", "label_name")  # an image's own columns the schema knows


def contrast_of(spec: Any) -> Any:
    """A contrast from a name, a ``"foil:NAME"`` string (as on the command line: a class name or index) or a
    `Contrast`."""
    from ..contrasts import Foil, get_contrast

    if isinstance(spec, str) and spec.lower().startswith("foil:"):
        name = spec.split(":", 1)[1].strip()
        if not name:
            raise ClassContrastError(f"contrast {spec!r}: a foil needs a class, 'foil:NAME'")
        return Foil(name)  # a name or an index, resolved with the model's classes (classes.class_index)
    return get_contrast(spec)


class ModelStage:
    """A stage of Ray Data's ``map_batches`` (or of the local engine) holding a model it loads on first use, in the
    worker that runs it: ``model`` a `load_model` spec, a factory returning a `ModelBundle` or a bundle; ``device``
    (default: the worker's GPU when it has one); ``weights`` those of a spec."""

    def __init__(self, model: Any, device: str | None = None, weights: str | None = "DEFAULT") -> None:
        self.model, self.device, self.weights = model, device, weights
        self._bundle: Any = None

    @property
    def bundle(self) -> Any:
        """The model, loaded on first use (in the worker that runs the stage)."""
        if self._bundle is None:
            self._bundle = load_bundle(self.model, self.device, self.weights)
        return self._bundle


class Explain(ModelStage):
    r"""Explain each image of a batch, as `cc.explain` does image by image, into one table row per (image, unit,
    target, contrast, method) (`classcontrast.scale.table`).

    ``model``: a `load_model` spec (``"efficientnet_lite0"``, ``"torchvision:resnet18"``...), a zero-argument
    factory returning a `ModelBundle`, or a bundle; ``method`` a name or a list of names; ``contrasts`` names,
    ``"foil:NAME"`` strings or `Contrast` objects; ``targets`` a selector `cc.explain` takes (``cc.TopK(2)``,
    ``cc.Region.all(2)``...), a class (a name or an index) or a list of classes, the same for every image;
    ``maps`` ``"input"`` (at the model's input size after its preprocessing), ``"layer"`` or ``"none"``;
    ``map_dtype`` ``"float32"`` or ``"float16"``; ``device`` where the model runs (default: the worker's GPU when it
    has one); ``weights`` those of a spec (`load_model`'s); ``method_options`` the methods' options (each method
    takes those it has).

    A call takes a batch in Ray Data's numpy format: an ``image`` column of H × W × C uint8 arrays (any sizes; what
    ``ray.data.read_images`` yields) and any other columns, which every row of that image carries. Each image goes
    through the model's own preprocessing from a PIL image (``bundle.transform(Image.fromarray(image))``) and is
    explained by a call of its own, so that its rows are exactly ``cc.explain``'s for that image; ``together=True``
    explains the images whose inputs come out the same size in one call per method (faster on a GPU; the same maps
    and scores to float32's rounding, about 1e-6 relative).
    """

    def __init__(self, model: Any, method: str | Sequence[str] = "gradcam", contrasts: Sequence[Any] = ("weighted",),
                 targets: Any = None, maps: str = "input", map_dtype: str = "float32", *, device: str | None = None,
                 weights: str | None = "DEFAULT", together: bool = False, **method_options: Any) -> None:
        if maps not in MAP_LEVELS:
            raise ClassContrastError(f"maps={maps!r}: choose one of {', '.join(MAP_LEVELS)}")
        if map_dtype not in MAP_DTYPES:
            raise ClassContrastError(f"map_dtype={map_dtype!r}: choose one of {', '.join(MAP_DTYPES)}")
        self.methods = [method] if isinstance(method, str) else list(method)
        if not self.methods:
            raise ClassContrastError("no method given")
        self.contrasts = [contrast_of(c) for c in ([contrasts] if isinstance(contrasts, str) else contrasts)]
        if not self.contrasts:
            raise ClassContrastError("no contrast given")
        super().__init__(model, device, weights)
        self.targets, self.maps, self.map_dtype = targets, maps, map_dtype
        self.together, self.options = together, method_options

    def __call__(self, batch: Mapping[str, Any]) -> Any:
        """The batch's rows as a pyarrow Table."""
        if "image" not in batch:
            raise ClassContrastError(f"the batch has no 'image' column (columns: {', '.join(batch)})")
        images = list(batch["image"])
        columns = {k: list(v) for k, v in batch.items() if k != "image"}
        rows: list[dict[str, Any]] = []
        for places, x in self._inputs(images):
            for method in self.methods:
                rows += self._rows(method, x, [{"_place": i, **{k: column_value(k, v[i]) for k, v in columns.items()}}
                                               for i in places])
        rows.sort(key=lambda r: r["_image"])  # the batch's order, image by image (a stable sort keeps the rest)
        for r in rows:
            del r["_image"]
        extra = [(k, _type(v)) for k, v in columns.items() if k not in IMAGE_COLUMNS]
        return to_table(rows, self.map_dtype, extra)

    def _inputs(self, images: list[Any]) -> list[tuple[list[int], Any]]:
        """The images preprocessed, grouped by the size of their inputs: (their places in the batch, (n, C, *S))."""
        import torch
        from PIL import Image

        from ..evaluation.runner import model_device

        prepared = [self.bundle.transform(Image.fromarray(_uint8(a, i)).convert("RGB")) for i, a in enumerate(images)]
        device = model_device(self.bundle.model)
        return [(places, torch.stack([prepared[i] for i in places]).to(device))
                for places in by_size(prepared, self.together)]

    def _rows(self, method: str, x: Any, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from ..engine import explain
        from ..methods import options_for

        targets = self.targets
        if isinstance(targets, (list, tuple)):  # classes for every image: each input's row of them
            targets = [list(targets)] * len(x)
        results = explain(self.bundle, x, method, self.contrasts, targets, **options_for(method, self.options))
        names = self.bundle.categories
        out = []
        for ex in results.values():
            predicted = ex.logits.detach().argmax(-1).tolist()
            for row in ex.rows(maps=self.maps):
                i = row["input"]
                image = {k: v for k, v in images[i].items() if k != "_place"}
                image.update(predicted=predicted[i], predicted_name=names[predicted[i]] if names is not None else None)
                out.append({**flat(row, image, self.maps, self.map_dtype), "_image": images[i]["_place"]})
        return out


def by_size(inputs: Sequence[Any], together: bool = True) -> list[list[int]]:
    """The places of ``inputs`` (tensors) grouped by shape, in order of first appearance — the inputs one batched call
    can take together (``together=False``: each alone)."""
    groups: dict[Any, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x.shape) if together else i, []).append(i)
    return list(groups.values())


def load_bundle(model: Any, device: str | None, weights: str | None = "DEFAULT") -> Any:
    """A `ModelBundle` from a spec (with its ``weights``), a factory or a bundle, on ``device`` (default: CUDA when
    there is one)."""
    import torch

    from ..models import load_model

    where = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(model, str):
        return load_model(model, weights=weights, device=where)
    bundle = model() if callable(model) and not hasattr(model, "transform") else model
    if not hasattr(bundle, "transform") or not hasattr(bundle, "model"):
        raise ClassContrastError(f"model must be a load_model spec, a ModelBundle or a function returning one, got "
                                 f"{type(bundle).__name__}")
    return bundle.to(where) if device is not None and hasattr(bundle, "to") else bundle


def _uint8(a: Any, i: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ClassContrastError(f"image {i} of the batch: expected an H x W x C array (C 1, 3 or 4), got shape "
                                 f"{arr.shape}")
    if arr.dtype != np.uint8:
        raise ClassContrastError(f"image {i} of the batch: expected uint8 pixels, got {arr.dtype}")
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def _plain(v: Any) -> Any:
    """A numpy scalar as a Python value (what pyarrow takes in a list)."""
    return v.item() if isinstance(v, np.generic) else v


def column_value(column: str, v: Any) -> Any:
    """An image's value in ``column`` as the schema takes it: a missing value (Ray Data's numpy batches turn None into
    NaN where a column mixes them) is None, a label an integer."""
    v = _plain(v)
    if isinstance(v, float) and v != v:
        return None
    return int(v) if column == "label" and isinstance(v, float) else v


def _type(values: list[Any]) -> Any:
    import pyarrow as pa

    return pa.array([_plain(v) for v in values]).type


__all__ = ["IMAGE_COLUMNS", "Explain", "ModelStage", "by_size", "column_value", "contrast_of", "load_bundle"]
