"""A dataset explained into a folder of Parquet parts, on an engine: ``local`` (this process, no Ray) or ``ray``
(Ray Data: the images' reading and explaining in ``map_batches`` workers, each loading the model once; this process
writes the parts as blocks arrive). Both write the same rows (`classcontrast.scale.stage.Explain`) to the same
resumable store (`classcontrast.scale.store.PartStore`): a run started again with the same folder explains only the
images no part holds."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClassContrastError
from .stage import Explain
from .store import PartStore
from .workers import ENGINES, Workers, ray_session


@dataclass(frozen=True)
class DatasetRequest:
    """What ``explain-dataset`` is asked: the model spec, the data, where the parts go, the methods, contrasts and
    targets, the maps kept and their dtype, the methods' options; the engine and, for Ray, its cluster address, the
    workers (``concurrency``), GPUs per worker; images per batch."""

    model: str
    data: Any
    out: Path
    methods: Sequence[str] = ("gradcam",)
    contrasts: Sequence[Any] = ("weighted",)
    targets: Any = None
    maps: str = "input"
    map_dtype: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)
    engine: str = "local"
    ray_address: str | None = None
    concurrency: int = 1
    num_gpus_per_worker: float = 0.0
    batch_size: int = 8
    weights: str | None = "DEFAULT"
    top_k: int | None = None  # without targets: the k first units of the model's kind (`classcontrast.units.top_units`)
    split: str | None = None  # a Hugging Face datasets folder's split (`classcontrast.data.hf`)

    def settings(self) -> dict[str, Any]:
        """What the rows depend on (`PartStore`): not the engine, the workers or the batch size."""
        from .. import __version__

        return {"model": self.model, "weights": self.weights, "methods": list(self.methods),
                "contrasts": [repr(c) for c in self.contrasts], "targets": repr(self.targets), "maps": self.maps,
                "map_dtype": self.map_dtype, "options": {k: repr(v) for k, v in sorted(self.options.items())},
                "classcontrast": __version__}


@dataclass
class DatasetDone:
    """What a run did: images explained now, images found done before, images skipped (unreadable), parts."""

    explained: int = 0
    before: int = 0
    skipped: list[str] = field(default_factory=list)
    parts: list[Path] = field(default_factory=list)


def explain_dataset(req: DatasetRequest, report: Callable[[str], None] = print) -> DatasetDone:
    """Explain ``req.data`` into ``req.out`` (see the module docstring); ``report`` says what is skipped."""
    from ..data.specs import open_source
    from ..models import load_model

    workers = Workers(req.engine, req.ray_address, req.concurrency, req.num_gpus_per_worker)  # checked: one line
    need_pyarrow()
    workers.start()  # Ray joined (or started) before any file is written; one line without Ray
    bundle = load_model(req.model, weights=req.weights)
    source = open_source(req.data, bundle.categories, exclude=[req.out], split=req.split)
    if req.top_k is not None and req.targets is None and len(source):  # what "top k" is: the model's kind says
        req = replace(req, targets=_top(bundle, source, req.top_k), top_k=None)
    stage = Explain(bundle, req.methods, req.contrasts, req.targets, req.maps, req.map_dtype, **req.options)
    store = PartStore(req.out, req.settings())
    done = store.done()
    todo = [s for s in source if s.stamp() not in done]
    result = DatasetDone(before=len(source) - len(todo))
    names = bundle.categories
    blocks = local_blocks(stage, todo, req.batch_size, result, report) if req.engine == "local" else \
        _ray(req, todo, names, result, report)
    for table in blocks:
        written = store.write(table)
        if written is not None:
            result.parts.append(written)
            result.explained += len(set(table.column("stamp").to_pylist()))
    return result


def _top(bundle: Any, source: Any, k: int) -> Any:
    """``targets=`` for the k first units of the model's kind, read on the first image (one forward pass)."""
    from ..engine import unwrap_model
    from ..evaluation.runner import model_device
    from ..units import top_units

    first = next(iter(source))
    x = first.prepared(bundle.transform)[None].to(model_device(bundle.model))
    return top_units(unwrap_model(bundle), x, k)


def decoded(image: Any) -> np.ndarray:
    """An image as the rows carry it: grey (H × W) or colour (H × W × 3) uint8, other modes made RGB (a stage taking
    colour converts a grey one; a grey model keeps its one channel)."""
    return np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))


def image_meta(s: Any, names: Sequence[str] | None) -> dict[str, Any]:
    """A sample's own columns (``id``, ``path``, ``stamp``, ``label``, ``label_name``), which its rows carry."""
    label = s.label
    return {"id": s.id, "path": s.path, "stamp": s.stamp(), "label": label,
            "label_name": names[label] if label is not None and names is not None else None}


def local_blocks(stage: Any, todo: list[Any], batch_size: int, result: DatasetDone,
                 report: Callable[[str], None]) -> Iterator[Any]:
    """The local engine: batches read (`decoded`) and turned into rows by ``stage`` (`Explain`, the atlas'
    ``Relevance``) in this process, one block per batch; an unreadable image is named in one line and skipped."""
    names = stage.bundle.categories
    for start in range(0, len(todo), batch_size):
        batch: dict[str, list[Any]] = {"image": []}
        for s in todo[start : start + batch_size]:
            try:
                image = decoded(s.load())
            except ClassContrastError as e:
                report(f"skipped: {e}")
                result.skipped.append(s.path or s.id)
                continue
            batch["image"].append(image)
            for k, v in image_meta(s, names).items():
                batch.setdefault(k, []).append(v)
        if batch["image"]:
            yield stage(batch)


def _ray(req: DatasetRequest, todo: list[Any], names: Sequence[str] | None, result: DatasetDone,
         report: Callable[[str], None]) -> Iterator[Any]:
    """The Ray engine for `explain_dataset`: `ray_blocks` with the `Explain` stage."""
    yield from ray_blocks(todo, names, result, report, workers=Workers("ray", req.ray_address, req.concurrency,
                                                                       req.num_gpus_per_worker),
                          stages=(ReadAndExplain, Explain), batch_size=req.batch_size,
                          args=(req.model, list(req.methods), list(req.contrasts), req.targets, req.maps,
                                req.map_dtype), kwargs={"weights": req.weights, **req.options})


def ray_blocks(todo: list[Any], names: Sequence[str] | None, result: DatasetDone, report: Callable[[str], None], *,
               workers: Workers, stages: tuple[type, type], batch_size: int, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Iterator[Any]:
    """The images' metadata as a Ray Dataset, read and turned into rows by ``workers.concurrency`` workers, each
    making its stage once (``stages``: the class reading each row's image from its path or stored bytes, and the
    class taking decoded images, ``stages[0]``'s base), the blocks yielded here as they arrive. Every row carries
    its image's ``stamp``; an image without rows that cannot be read is named in one line."""
    ray = ray_session(workers.address)
    if not todo:
        return
    # files are read by the workers, a dataset's images travel as their stored (encoded) bytes and are decoded there;
    # only images made in memory (the bundled photos' views) travel decoded
    shipped = any(s.path is None and not callable(getattr(s.load, "content", None)) for s in todo)
    items = [{**image_meta(s, names), **({"image": decoded(s.load())} if shipped else
                                     {"encoded": s.load.content() if s.path is None else b""})} for s in todo]
    ds = ray.data.from_items(items)
    pool = ray.data.ActorPoolStrategy(size=workers.concurrency)  # each worker loads the model once
    mapped = ds.map_batches(stages[1] if shipped else stages[0], fn_constructor_args=args,
                            fn_constructor_kwargs=kwargs, batch_size=batch_size, compute=pool,
                            num_gpus=workers.num_gpus or None, batch_format="numpy")
    seen: set[str] = set()
    for table in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
        seen.update(table.column("stamp").to_pylist())
        yield table
    for s in todo:  # a file the workers could not read: named here, in one line, as the local engine names it
        if s.stamp() not in seen:
            _unread(s, result, report)


def _unread(s: Any, result: DatasetDone, report: Callable[[str], None]) -> None:
    """An image without rows: skipped when it cannot be read (named in one line); one that reads had no unit."""
    try:
        s.load()
    except ClassContrastError as e:
        report(f"skipped: {e}")
        result.skipped.append(s.path or s.id)


def read_images(batch: Any) -> dict[str, Any]:
    """A Ray batch whose rows carry a ``path`` or ``encoded`` bytes, with an ``image`` column of the decoded images
    instead of the bytes; a row whose image cannot be read is left out (the driver names it)."""
    from ..data.images import load_image, load_image_bytes

    images, keep = [], []
    for p, encoded, name in zip(batch["path"], batch["encoded"], batch["id"], strict=True):
        try:
            read = load_image_bytes(bytes(encoded), str(name)) if len(encoded) else load_image(p)
            images.append(np.asarray(read))
            keep.append(True)
        except ClassContrastError:
            keep.append(False)
    column = np.empty(len(images), dtype=object)
    column[:] = images
    mask = np.asarray(keep, dtype=bool)
    kept = {k: np.asarray(v)[mask] for k, v in batch.items() if k != "encoded"}  # the bytes stay here
    return {**kept, "image": column}


class ReadAndExplain(Explain):
    """`Explain` reading each row's image in the worker (`read_images`): a Ray run's rows carry paths and bytes, not
    pixels."""

    def __call__(self, batch: Any) -> Any:
        return super().__call__(read_images(batch))


def need_pyarrow(command: str = "explain-dataset") -> None:
    """Parquet is written with pyarrow: one line naming ``command`` when it is not installed."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise ClassContrastError(f"{command} writes Parquet with pyarrow: pip install 'classcontrast[parquet]' "
                                 "(or 'classcontrast[ray]' for the Ray engine too)")


__all__ = ["ENGINES", "DatasetDone", "DatasetRequest", "ReadAndExplain", "decoded", "explain_dataset", "image_meta",
           "local_blocks", "ray_blocks", "ray_session", "read_images"]
