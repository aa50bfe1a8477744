"""A wire-level FAKE Kubernetes API server for tests (see docs/fake-kube-apiserver.md)."""

from tests.fakekube.errors import ApiError
from tests.fakekube.resources import CrdError, ResourceType, crd_types
from tests.fakekube.server import FakeApiServer, RequestRecord, client_configuration

__all__ = [
    "ApiError",
    "CrdError",
    "FakeApiServer",
    "RequestRecord",
    "ResourceType",
    "client_configuration",
    "crd_types",
]
