"""The options of the commands that run on an engine (``explain-dataset``, ``audit``): where their batches run."""

from __future__ import annotations

from typing import Any

import typer

ENGINE = typer.Option("local", help="local (this process) | ray (Ray Data workers)")
RAY_ADDRESS = typer.Option(None, help="A Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
CONCURRENCY = typer.Option(1, help="Ray workers, each loading the model once")
NUM_GPUS = typer.Option(0.0, help="GPUs per Ray worker")


def workers(engine: str, ray_address: str | None, concurrency: int, num_gpus_per_worker: float) -> Any:
    """The engine options as `classcontrast.scale.workers.Workers` (which checks each: one line naming the option)."""
    from ..scale.workers import Workers

    return Workers(engine, ray_address, concurrency, num_gpus_per_worker)


__all__ = ["CONCURRENCY", "ENGINE", "NUM_GPUS", "RAY_ADDRESS", "workers"]
