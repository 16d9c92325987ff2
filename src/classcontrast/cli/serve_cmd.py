"""``classcontrast serve``: the models answered over HTTP, the KServe V1 protocol with contrasts
(`classcontrast.serve`). The command declares and checks its options; FastAPI, uvicorn and torch load when it runs."""

from __future__ import annotations

import ipaddress
from typing import Any

import typer

from . import manifest

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _serve(
    model: list[str] = typer.Option([manifest.DEFAULT_MODEL], "--model", help="A model spec (classcontrast models), "
                                    "or NAME=SPEC; repeat for several (each served as /v1/models/NAME)"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (another than loopback needs --token or "
                             "--no-auth)"),
    port: int = typer.Option(8080, help="Port to listen on"),
    token: str = typer.Option(None, help="Bearer token every request must carry (Authorization: Bearer TOKEN)"),
    no_auth: bool = typer.Option(False, "--no-auth", help="Listen beyond loopback without a token (behind a proxy "
                                 "that authenticates)"),
    weights: str = typer.Option("DEFAULT", help="DEFAULT (pretrained), none (random) or a state-dict path"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps"),
    max_batch: int = typer.Option(16, help="Micro-batching: at most this many images explained in one call"),
    wait_ms: float = typer.Option(5.0, help="Micro-batching: how long a request waits for others (ms; 0: none)"),
    max_body_mb: float = typer.Option(20.0, help="Largest request body (MB; larger: 413)"),
    max_queue: int = typer.Option(64, help="Requests in work or waiting at once (more: 503 with Retry-After)"),
    timeout_s: float = typer.Option(120.0, help="Longest time a request may take (s; longer: 504)"),
) -> None:
    """Serve models over HTTP: KServe V1 :predict and :explain (with contrasts), health checks, /metrics."""
    from .checks import check_number

    for value, option, low in ((port, "--port", 1), (max_batch, "--max-batch", 1), (max_queue, "--max-queue", 1)):
        check_number(value, option, minimum=low)
    for value, option in ((wait_ms, "--wait-ms"), (max_body_mb, "--max-body-mb"), (timeout_s, "--timeout-s")):
        check_number(value, option, minimum=0)
    check_number(port, "--port", maximum=65535)
    if not _loopback(host) and token is None and not no_auth:
        raise typer.BadParameter(f"--host {host} listens beyond this machine: give --token (or --no-auth behind an "
                                 "authenticating proxy)")
    from ..serve.main import serve

    serve(named(model), host=host, port=port, token=token, weights=weights, device=device, max_batch=max_batch,
          wait_ms=wait_ms, max_body_mb=max_body_mb, max_queue=max_queue, timeout_s=timeout_s)


def _loopback(host: str) -> bool:
    try:
        return host in LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def named(specs: list[str]) -> dict[str, str]:
    """``NAME=SPEC`` or ``SPEC`` (named by its last part: ``torchvision:resnet18`` -> ``resnet18``) -> {name: spec};
    one name twice is an error naming it."""
    out: dict[str, str] = {}
    for item in specs:
        name, spec = item.split("=", 1) if "=" in item.split(":", 1)[0] else ("", item)
        name = name or spec.replace("\\", "/").rstrip("/").split("/")[-1].split(":")[-1]
        if not name or any(c in name for c in "/?#: "):
            raise typer.BadParameter(f"--model {item}: name it, NAME=SPEC (a name without / ? # : or spaces)")
        if name in out:
            raise typer.BadParameter(f"--model {item}: the name {name!r} is taken; give NAME=SPEC")
        out[name] = spec
    return out


serve_command: Any = _serve

__all__ = ["named", "serve_command"]
