"""The node file: what the speaker tells the CNI plugin about its node.

Written by the speaker (atomically), read by `flatroute-cni` on every ADD. It is JSON so the
plugin can read it with the standard library alone. Default path: /run/flatroute/node.json.

    {
      "version": 1,
      "node": "tk-node1",
      "podBlocks": {"ipv4": ["10.244.0.0/26"], "ipv6": ["fd00:10:244::/122"]},
      "gateway": {"ipv4": "169.254.1.1", "ipv6": "fe80::1"},
      "mtu": 1500,
      "routeProtocol": 70,
      "podRouteProtocol": 71
    }

`routeProtocol` is the speaker's own route protocol; `podRouteProtocol` the one the plugin gives
the pods' host routes (flatroute.CNI_ROUTE_PROTOCOL). A file without it (an older speaker)
means the default. Plugins that predate `podRouteProtocol` used `routeProtocol` for their pod
routes, which is why the plugin still recognises that number on a pod's veth (docs/cni.md).

This module must stay import-light (stdlib only): the CNI plugin imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL

DEFAULT_PATH = "/run/flatroute/node.json"
VERSION = 1
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"


class NodeFileError(Exception):
    """The node file is missing or malformed."""


@dataclass(frozen=True, slots=True)
class NodeFile:
    node: str
    ipv4_blocks: tuple[str, ...]
    ipv6_blocks: tuple[str, ...]
    mtu: int = 1500
    gateway_v4: str = GATEWAY_V4
    gateway_v6: str = GATEWAY_V6
    route_protocol: int = ROUTE_PROTOCOL
    pod_route_protocol: int = CNI_ROUTE_PROTOCOL

    def to_json(self) -> str:
        doc = {
            "version": VERSION,
            "node": self.node,
            "podBlocks": {"ipv4": list(self.ipv4_blocks), "ipv6": list(self.ipv6_blocks)},
            "gateway": {"ipv4": self.gateway_v4, "ipv6": self.gateway_v6},
            "mtu": self.mtu,
            "routeProtocol": self.route_protocol,
            "podRouteProtocol": self.pod_route_protocol,
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def parse(text: str, source: str = DEFAULT_PATH) -> NodeFile:
    try:
        doc = json.loads(text)
        if doc.get("version") != VERSION:
            raise NodeFileError(f"{source}: unsupported version {doc.get('version')!r}")
        blocks = doc.get("podBlocks") or {}
        gw = doc.get("gateway") or {}
        return NodeFile(
            node=str(doc["node"]),
            ipv4_blocks=tuple(str(b) for b in blocks.get("ipv4") or ()),
            ipv6_blocks=tuple(str(b) for b in blocks.get("ipv6") or ()),
            mtu=int(doc.get("mtu", 1500)),
            gateway_v4=str(gw.get("ipv4", GATEWAY_V4)),
            gateway_v6=str(gw.get("ipv6", GATEWAY_V6)),
            route_protocol=int(doc.get("routeProtocol", ROUTE_PROTOCOL)),
            pod_route_protocol=int(doc.get("podRouteProtocol", CNI_ROUTE_PROTOCOL)),
        )
    except NodeFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NodeFileError(f"{source}: malformed node file: {exc}") from exc


def read(path: str = DEFAULT_PATH) -> NodeFile:
    try:
        with open(path, encoding="utf-8") as fh:
            return parse(fh.read(), path)
    except FileNotFoundError as exc:
        raise NodeFileError(f"{path}: no node file (is the speaker running?)") from exc
    except OSError as exc:
        raise NodeFileError(f"{path}: cannot read node file: {exc.strerror}") from exc
