"""The Hugging Face hub, offline-aware: with no network, fail at once instead of after minutes of retries."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def reachable() -> bool:
    """Whether huggingface.co resolves (a 3-second DNS lookup)."""
    try:
        socket.setdefaulttimeout(3)
        socket.getaddrinfo("huggingface.co", 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(None)


@contextmanager
def offline_unless_reachable() -> Iterator[None]:
    """Without a network, put the Hugging Face hub in offline mode for the call: a local cache still
    works, and a missing file fails at once instead of after minutes of retries."""
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_OFFLINE
    if not reachable():
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved
