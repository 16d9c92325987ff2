"""Where a job's chunks of work run: in this process (``local``) or in Ray Data workers (``ray``), each worker loading
the model once (the actor pattern) and on its GPU when it has one. A chunk is a key; its work ``work(bundle, key)``
returns any picklable result, which comes back here, so that the caller writes every file itself (the workers write
nothing). Nothing here imports Ray until a Ray run is asked for."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ClassContrastError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Workers:
    """The engine (``local`` or ``ray``), the Ray cluster's address (None: ``RAY_ADDRESS``, else a local Ray on this
    machine's cores), how many workers (``concurrency``) and the GPUs each takes."""

    engine: str = "local"
    address: str | None = None
    concurrency: int = 1
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ClassContrastError(f"--engine {self.engine!r}: choose {' or '.join(ENGINES)}")
        if self.concurrency < 1:
            raise ClassContrastError(f"--concurrency must be at least 1, got {self.concurrency}")
        if not math.isfinite(self.num_gpus):
            raise ClassContrastError(f"--num-gpus-per-worker must be a finite number, got {self.num_gpus}")
        if self.num_gpus < 0:
            raise ClassContrastError(f"--num-gpus-per-worker must be at least 0, got {self.num_gpus:g}")

    def start(self) -> None:
        """Join (or start) Ray before anything is written: one line when Ray is not installed."""
        if self.engine == "ray":
            ray_session(self.address)

    def map(self, keys: Sequence[int], bundle: Any, work: Callable[[Any, int], Any]) -> Iterator[tuple[int, Any]]:
        """``(key, work(bundle, key))`` for every key, in the order the chunks finish."""
        if self.engine == "local" or not keys:
            for k in keys:
                yield k, work(bundle, k)
            return
        ray = ray_session(self.address)
        ds = ray.data.from_items([{"key": int(k)} for k in keys], override_num_blocks=len(keys))
        mapped = ds.map_batches(Chunks, fn_constructor_args=(bundle, work), batch_size=1, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=self.concurrency),
                                num_gpus=self.num_gpus or None)
        for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            for k, payload in zip(batch["key"].tolist(), batch["payload"], strict=True):
                yield int(k), pickle.loads(payload)


class Chunks:
    """The Ray stage of `Workers.map`: the bundle moved once to the worker's GPU (when it has one), then each row's
    chunk done by ``work`` and its result pickled into the row."""

    def __init__(self, bundle: Any, work: Callable[[Any, int], Any]) -> None:
        import torch

        self.bundle = bundle.to("cuda") if torch.cuda.is_available() and hasattr(bundle, "to") else bundle
        self.work = work

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = batch["key"].tolist()
        payload = np.empty(len(keys), dtype=object)
        payload[:] = [pickle.dumps(self.work(self.bundle, int(k))) for k in keys]
        return {"key": np.asarray(keys, dtype=np.int64), "payload": payload}


def ray_session(address: str | None) -> Any:
    """Ray, joined to the cluster at ``address`` (or ``RAY_ADDRESS``), else a local Ray on this machine's cores; one
    line when Ray is not installed. Ray's progress bars, INFO lines and warnings are kept off the terminal (errors
    still show; a failing batch raises here). Ray 2.60's core still logs one line per run that the actors'
    constructor arguments live in the object store (ray-project/ray#57733: Ray Data's own, harmless)."""
    import logging

    try:
        import ray
    except ImportError as e:
        raise ClassContrastError("--engine ray needs Ray: pip install 'classcontrast[ray]'") from e
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    _quiet(ray)
    return ray


def _quiet(ray: Any) -> None:
    """Ray Data's progress bars and per-dataset lines off (a command prints its own one-line summary)."""
    context = ray.data.DataContext.get_current()
    for name in ("enable_progress_bars", "enable_operator_progress_bars", "enable_rich_progress_bars",
                 "print_on_execution_start", "enable_auto_log_stats"):
        if getattr(context, name, False):
            setattr(context, name, False)


__all__ = ["ENGINES", "Chunks", "Workers", "ray_session"]
