"""Interface names shared by the lab and the rendered configs.

Rule: the interface on X that leads to neighbour Y is named Y (the lab builds it that way; the
renderers use it unless the fabric gives the router a `ports:` entry for Y). Linux allows 15
characters, so longer names are shortened deterministically.
"""

from __future__ import annotations

import hashlib

#: the ToR's server-facing interface (an SVI / bridge) holding its peering subnet addresses
SERVERS_INTERFACE = "servers"
MAX_IFNAME = 15


def ifname(neighbor: str) -> str:
    """Linux-safe interface name for the link toward `neighbor` (at most 15 characters)."""
    if len(neighbor) <= MAX_IFNAME:
        return neighbor
    digest = hashlib.sha256(neighbor.encode()).hexdigest()[:4]
    return f"{neighbor[:10]}-{digest}"


#: the host end of every pod's veth made by the CNI plugin: 'flr' + 12 hex digits (cni/verbs.py
#: makes them; the speaker attaches the eBPF encapsulation to them)
POD_VETH_PREFIX = "flr"
_HEX = frozenset("0123456789abcdef")


def is_pod_veth(name: str) -> bool:
    return len(name) == MAX_IFNAME and name.startswith(POD_VETH_PREFIX) \
        and set(name[len(POD_VETH_PREFIX):]) <= _HEX
