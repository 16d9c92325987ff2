"""Shared fixtures: tiny float64 models, the embedded model, small images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import classcontrast as cc


class TinyCNN(nn.Module):
    """Conv-BN-ReLU ×2, global pooling, linear head: small enough for brute force over all classes."""

    def __init__(self, num_classes: int = 7, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))
    return model


@pytest.fixture
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(TinyCNN()).double().eval()


@pytest.fixture
def tiny_x() -> torch.Tensor:
    return torch.randn(3, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules with tests that need the session's Ray run last, each with those tests at its end: Ray's processes
    (its store, scheduler and workers) start late and the rest of the suite does not share the cores with them; a
    module's tests stay together (its module fixtures are made once)."""
    def ray(item: pytest.Item) -> bool:
        return "local_ray" in getattr(item, "fixturenames", ())

    module = {id(item): str(item.path) for item in items}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(module[id(item)], i)
    with_ray = {module[id(item)] for item in items if ray(item)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (module[id(item)] in with_ray, first[module[id(item)]], ray(item), order[id(item)]))


@pytest.fixture(scope="session")
def embedded() -> cc.ModelBundle:
    return cc.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def cat_x(embedded: cc.ModelBundle) -> torch.Tensor:
    return embedded.transform(cc.sample_image("chelsea"))[None]


@pytest.fixture(scope="session")
def embedded64(embedded: cc.ModelBundle) -> nn.Module:
    """The embedded model in float64 (for exactness tests against slow references)."""
    import copy

    return copy.deepcopy(embedded.model).double()


@pytest.fixture(scope="session")
def photo64(embedded: cc.ModelBundle) -> torch.Tensor:
    return embedded.transform(cc.sample_image("coffee"))[None].double()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_files_in_the_repository() -> Iterator[None]:
    """The tests write into their temporary folders only: a command line run without ``--out`` would
    leave a ``why.png`` in the repository (and a commit would pick it up)."""
    root = Path(__file__).resolve().parents[1]
    before = {p.name for p in root.iterdir() if p.is_file()}
    yield
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.name not in before)
    assert not stray, f"tests wrote into the repository root: {stray}"


@pytest.fixture(scope="session")
def local_ray() -> Iterator[object]:
    """One local Ray for the whole session (2 CPUs, no dashboard), shut down at its end."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def server(embedded: cc.ModelBundle) -> Iterator[str]:
    """One ``classcontrast serve`` app for the whole session, on uvicorn at a free loopback port, serving the embedded
    model as ``lite0`` (micro-batching: up to 8 images, 30 ms of waiting); yields its base URL."""
    import socket
    import threading
    import time

    uvicorn = pytest.importorskip("uvicorn")
    from classcontrast.serve import ServedModel, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app({"lite0": ServedModel("lite0", embedded, max_batch=8, wait_ms=30)})
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
