"""The ASGI app of ``classcontrast serve``: the KServe V1 protocol (`classcontrast.serve.protocol`) for each served
model, the Open Inference Protocol's health endpoints and Prometheus metrics — safe by default: a body limit (413),
a bounded queue (503 with Retry-After), a time limit per request (504), a bearer token when asked (401), one-line
JSON errors, never a traceback; no file path from a request is ever read."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request  # at the module's level: the routes' annotations name it

from ..errors import ClassContrastError
from .explorer import add_explorer
from .protocol import RequestError, explain_request, predict_request
from .runner import Cancelled, ServedModel

SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                               "frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class Limits:
    """The server's limits: request body (bytes), requests in work or waiting at once, seconds per request."""

    def __init__(self, max_body_mb: float = 20.0, max_queue: int = 64, timeout_s: float = 120.0) -> None:
        self.max_body = int(max_body_mb * 2**20)
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self._busy = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self._busy >= self.max_queue:
                raise RequestError(f"the server is busy ({self.max_queue} requests in work): retry shortly", 503)
            self._busy += 1

    def leave(self) -> None:
        with self._lock:
            self._busy -= 1

    @property
    def busy(self) -> int:
        return self._busy


class _Guard:
    """Plain ASGI middleware (a request's disconnection stays visible to its handler): the bearer token, when one
    is set, on every path but the health checks (401), and the security headers on every answer."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        from fastapi.responses import JSONResponse
        from starlette.datastructures import Headers, MutableHeaders

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token is not None and not scope["path"].startswith("/v2/health/") and \
                Headers(scope=scope).get("authorization", "") != f"Bearer {self.token}":
            refused = JSONResponse({"error": "missing or wrong bearer token (Authorization: Bearer ...)"},
                                   status_code=401, headers=SECURITY_HEADERS)
            await refused(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        await self.app(scope, receive, with_headers)


def _metrics() -> Any:
    """The app's own Prometheus registry and instruments (one per app: tests may run several)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    return {
        "registry": registry,
        "requests": Counter("classcontrast_requests", "Requests answered", ["model", "verb", "code"],
                            registry=registry),
        "latency": Histogram("classcontrast_request_seconds", "Time to answer a request", ["model", "verb"],
                             registry=registry),
        "batch": Histogram("classcontrast_batch_inputs", "Inputs per explain call (micro-batching)", ["model"],
                           buckets=(1, 2, 4, 8, 16, 32, 64), registry=registry),
        "queue": Gauge("classcontrast_queue_depth", "Requests in work or waiting", registry=registry),
    }


def create_app(models: Mapping[str, ServedModel], *, token: str | None = None, limits: Limits | None = None) -> Any:
    """The FastAPI app serving ``models`` by name (see the module docstring); ``token``: the bearer token every
    request but the health checks must carry."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    limits = limits or Limits()
    metrics = _metrics()
    for name, served in models.items():  # the sizes of the explain calls micro-batching makes
        served.batcher.observe = metrics["batch"].labels(name).observe
    app = FastAPI(title="classcontrast", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, **headers: str) -> Any:
        return JSONResponse({"error": message}, status_code=status, headers={**SECURITY_HEADERS, **headers})

    app.add_middleware(_Guard, token=token)

    @app.get("/v2/health/live")
    def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v1/models/{name}")
    def model_status(name: str) -> Any:
        if name.rsplit(":", 1)[-1] in ("predict", "explain") and name.rsplit(":", 1)[0] in models:
            return error(405, f"GET is not allowed on :{name.rsplit(':', 1)[-1]} (POST a request)")
        if name not in models:
            return error(404, f"no model {name!r} (served: {', '.join(models)})")
        return {"name": name, "ready": True}

    @app.get("/metrics")
    def prometheus() -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics["queue"].set(limits.busy)
        return Response(generate_latest(metrics["registry"]), media_type=CONTENT_TYPE_LATEST)

    async def answer(request: Request, name: str, verb: str) -> Any:
        t0 = time.perf_counter()
        try:
            result = await _work(request, models, name, verb, limits)
            code, response = 200, JSONResponse(result)
        except RequestError as e:
            code = e.status
            response = error(code, str(e), **({"Retry-After": "1"} if code == 503 else {}))
        metrics["requests"].labels(name if name in models else "?", verb, str(code)).inc()
        metrics["latency"].labels(name if name in models else "?", verb).observe(time.perf_counter() - t0)
        return response

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Any:
        return await answer(request, name, "predict")

    @app.post("/v1/models/{name}:explain")
    async def explain(name: str, request: Request) -> Any:
        return await answer(request, name, "explain")

    add_explorer(app, models, error, lambda request: _body(request, limits.max_body))

    @app.exception_handler(404)
    async def not_found(_request: Request, _exc: Exception) -> Any:
        return error(404, "no such endpoint (GET /v1/models/NAME, POST /v1/models/NAME:predict or :explain)")

    @app.exception_handler(405)
    async def wrong_method(request: Request, _exc: Exception) -> Any:
        return error(405, f"{request.method} is not allowed here")

    return app


async def _body(request: Any, limit: int) -> Any:
    """The request's JSON, read up to ``limit`` bytes (413 beyond; 400 for what is not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body is larger than {limit // 2**20} MB", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is larger than {limit // 2**20} MB", 413)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the request body is not JSON ({e})") from e


async def _work(request: Any, models: Mapping[str, ServedModel], name: str, verb: str, limits: Limits) -> Any:
    """The answer of one ``:predict`` or ``:explain`` request, its model's work in a worker thread under the time
    limit."""
    import anyio
    from starlette.concurrency import run_in_threadpool

    if name not in models:
        raise RequestError(f"no model {name!r} (served: {', '.join(models)})", 404)
    served = models[name]
    body = await _body(request, limits.max_body)
    cancelled, late = threading.Event(), threading.Event()  # the client went away / the time limit passed
    if verb == "predict":
        blobs, top_k = predict_request(body)
        job: Callable[[], Any] = lambda: {"predictions": served.predict(blobs, top_k)}  # noqa: E731
    else:
        blobs, spec = explain_request(body, _method)
        job = lambda: {"explanations": served.explain(blobs, spec, cancelled)}  # noqa: E731
    limits.enter()
    try:
        failed: list[Exception] = []
        async with anyio.create_task_group() as tasks:  # the work, and a watch on the client and the clock
            tasks.start_soon(_watch, request, cancelled, late, time.monotonic() + limits.timeout_s)
            try:
                result = await run_in_threadpool(job)
            except Exception as e:  # raised below, not inside the group (which would wrap it)
                failed.append(e)
            tasks.cancel_scope.cancel()
    finally:
        limits.leave()
    if failed and isinstance(failed[0], Cancelled):
        if late.is_set():
            raise RequestError(f"the request took longer than {limits.timeout_s:g} s", 504) from failed[0]
        raise RequestError("the client gave the request up", 499) from failed[0]
    if failed and isinstance(failed[0], ClassContrastError) and not isinstance(failed[0], RequestError):
        raise RequestError(str(failed[0])) from failed[0]
    if failed:
        raise failed[0]
    return result


async def _watch(request: Any, cancelled: threading.Event, late: threading.Event, deadline: float) -> None:
    """Sets ``cancelled`` once the client has gone away or the ``deadline`` (``time.monotonic``) has passed (then
    ``late`` too), checked every 50 ms while the request is in work: its work stops at the model's next forward
    pass (a thread cannot be interrupted otherwise)."""
    import anyio

    while not await request.is_disconnected():
        if time.monotonic() > deadline:
            late.set()
            break
        await anyio.sleep(0.05)
    cancelled.set()


def _method(name: str) -> tuple[str, tuple[str, ...]] | None:
    """A method's registered name (any spelling the library takes) and its options; None for no such method."""
    from ..methods import canonical_name, method_options

    found = canonical_name(name)
    return None if found is None else (found, tuple(sorted(method_options(found))))


__all__ = ["SECURITY_HEADERS", "Limits", "create_app"]
