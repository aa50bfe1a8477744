"""A wire-level FAKE Kubernetes API server for tests (see docs/fake-kube-apiserver.md)."""

from fakekube.errors import ApiError
from fakekube.resources import CrdError, ResourceType, crd_types
from fakekube.server import FakeApiServer, RequestRecord, client_configuration

__all__ = [
    "ApiError",
    "CrdError",
    "FakeApiServer",
    "RequestRecord",
    "ResourceType",
    "client_configuration",
    "crd_types",
]
