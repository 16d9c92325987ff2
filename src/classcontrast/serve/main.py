"""Loading the served models and running the app on uvicorn."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ClassContrastError


def serve(specs: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          weights: str = "DEFAULT", device: str = "auto", max_batch: int = 16, wait_ms: float = 5.0,
          max_body_mb: float = 20.0, max_queue: int = 64, timeout_s: float = 120.0) -> None:
    """Load each model once (``specs``: name -> `load_model` spec) and serve them until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise ClassContrastError("classcontrast serve needs FastAPI and uvicorn: pip install "
                                 "'classcontrast[serve]'") from e
    from ..cli.common import console, resolve_device
    from ..models import load_model
    from .app import Limits, create_app
    from .runner import ServedModel

    dev = resolve_device(device)
    models = {name: ServedModel(name, load_model(spec, weights=None if weights.lower() == "none" else weights,
                                                 device=dev), max_batch=max_batch, wait_ms=wait_ms)
              for name, spec in specs.items()}
    app = create_app(models, token=token, limits=Limits(max_body_mb, max_queue, timeout_s))
    console.print(f"serving {', '.join(models)} on http://{host}:{port}/v1/models/NAME (:predict, :explain)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["serve"]
