"""What a real API server does to a Service on create: its status cleared (only the status
subresource writes it), its type defaulted, a ClusterIP allocated from the service range, and
`spec.loadBalancerClass` refused on a Service that is not of type LoadBalancer."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from fakekube import errors

SERVICE_KEY = ("", "services")
#: the fake's service range (kube-apiserver --service-cluster-ip-range)
SERVICE_RANGE = ipaddress.IPv4Network("10.96.0.0/16")

Obj = dict[str, Any]


def prepare_create(obj: Obj, existing: Iterable[Obj]) -> None:
    obj.pop("status", None)
    obj["status"] = {"loadBalancer": {}}
    spec = obj.setdefault("spec", {})
    kind = spec.setdefault("type", "ClusterIP")
    name = str((obj.get("metadata") or {}).get("name"))
    if spec.get("loadBalancerClass") is not None and kind != "LoadBalancer":
        raise errors.invalid("Service", "", name, "spec.loadBalancerClass",
                             "Forbidden: may only be used when `type` is 'LoadBalancer'")
    if kind == "ExternalName" or spec.get("clusterIP"):
        return
    used = {str((o.get("spec") or {}).get("clusterIP")) for o in existing}
    for host in SERVICE_RANGE.hosts():
        if str(host) not in used and host != SERVICE_RANGE.network_address + 1:
            spec["clusterIP"] = str(host)
            spec["clusterIPs"] = [str(host)]
            return
    raise errors.invalid("Service", "", name, "spec.clusterIP",
                         "Internal error: range is full")
