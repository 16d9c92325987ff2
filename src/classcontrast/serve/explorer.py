"""The live explorer of ``classcontrast serve`` at ``/``: a page (``assets/live.html``, its script and style, all
served from here: nothing loads from outside) that predicts and explains an uploaded, dropped or bundled image
through the server's own ``:predict`` and ``:explain``; besides them it needs the server's list of models, methods,
contrasts and samples, a bundled sample's PNG (by its name only: no path from a request is read) and the model's
view of an image (its preprocessing, undone of nothing: the pixels the maps lie on)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request  # at the module's level: the routes' annotations name it

from .protocol import RequestError, image_bytes, split_body
from .runner import ServedModel

METHODS = ("gradcam", "gradient", "integrated_gradients", "occlusion")  # the page's buttons: the quick ones
ASSETS = {"live.js": "text/javascript", "live.css": "text/css"}


def _asset(name: str) -> str:
    return resources.files("classcontrast.serve").joinpath("assets", name).read_text(encoding="utf-8")


def _png(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def model_view(served: ServedModel, body: Any) -> dict[str, str]:
    """The first instance as the model sees it (its resize and crop, before normalisation), as a PNG in base64."""
    from PIL import Image

    from ..data.images import load_image_bytes
    from ..errors import ClassContrastError

    instances, _ = split_body(body)
    try:
        pixels = served.bundle.preprocess(load_image_bytes(image_bytes(instances[0], 0), "instance 0"))
    except ClassContrastError as e:
        raise e if isinstance(e, RequestError) else RequestError(str(e)) from e
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise RequestError(f"model {served.name!r} does not take one image: the explorer shows images only")
    array = (pixels.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return {"image": _png(Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array))}


def add_explorer(app: FastAPI, models: Mapping[str, ServedModel], error: Any, read: Any) -> None:
    """The page's routes on ``app`` (``error(status, message)``: the app's one-line JSON error; ``read(request)``:
    its body, within the server's limit)."""
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from ..data.samples import SAMPLES, sample_image
    from ..explorer.page import NAMED

    @app.get("/")
    def page() -> Any:
        return HTMLResponse(_asset("live.html"))

    @app.get("/explorer/{name}")
    def asset(name: str) -> Any:
        if name == "config":
            return {"models": list(models), "methods": list(METHODS), "contrasts": list(NAMED),
                    "samples": sorted(SAMPLES)}
        if name not in ASSETS:
            return error(404, f"no such file {name!r}")
        return Response(_asset(name), media_type=ASSETS[name])

    @app.get("/explorer/samples/{name}.png")
    def sample(name: str) -> Any:
        if name not in SAMPLES:
            return error(404, f"no sample {name!r} (samples: {', '.join(sorted(SAMPLES))})")
        buf = io.BytesIO()
        sample_image(name).convert("RGB").save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")

    @app.post("/explorer/view/{name}")
    async def view(name: str, request: Request) -> Any:
        if name not in models:
            return error(404, f"no model {name!r}")
        try:
            return JSONResponse(await run_in_threadpool(model_view, models[name], await read(request)))
        except RequestError as e:
            return error(e.status, str(e))


__all__ = ["METHODS", "add_explorer", "model_view"]
