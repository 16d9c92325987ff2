"""``classcontrast serve``: explanations as a service, the KServe V1 protocol with contrasts.

`create_app` builds the ASGI app for `ServedModel` objects (`classcontrast.serve.runner`); `serve` loads the models
and runs it on uvicorn. FastAPI, uvicorn and prometheus-client are the ``[serve]`` extra; nothing here is imported
by ``import classcontrast``.
"""

from __future__ import annotations

from .app import Limits, create_app
from .runner import Batcher, ServedModel

__all__ = ["Batcher", "Limits", "ServedModel", "create_app"]
