"""pytest fixtures for suites that want the fake: ``from fakekube.fixtures import *``
in a conftest (or import the two names)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fakekube.server import FakeApiServer, client_configuration


@pytest.fixture
def fake_kube() -> Iterator[FakeApiServer]:
    """A started fake API server, stopped after the test; short bookmark interval."""
    with FakeApiServer(bookmark_interval=0.2) as fake:
        yield fake


@pytest.fixture
def kube_api_client(fake_kube: FakeApiServer) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` talking to ``fake_kube``."""
    from kubernetes import client

    api: Any = client.ApiClient(client_configuration(fake_kube.url))
    try:
        yield api
    finally:
        api.close()


__all__ = ["fake_kube", "kube_api_client"]
