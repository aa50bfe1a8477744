"""The node's static settings, applied once per generation: sysctls, the SID device, the seg6
tunnel source, and the node file the CNI plugin reads."""

from __future__ import annotations

import os
from collections.abc import Callable

from flatroute import ROUTE_PROTOCOL
from flatroute.errors import AdapterError
from flatroute.files import write_atomic
from flatroute.nodefile import NodeFile
from flatroute.nodestate import NodeState
from speaker import reconcile
from speaker.netlink import KernelAdapter

BASE_SYSCTLS = (("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv4.conf.lo.rp_filter", "0"))
KERNEL_SRV6_SYSCTLS = (("net.ipv6.conf.all.seg6_enabled", "1"),
                       # the outer flow label from the flow hash, as the eBPF datapath sets
                       # it: ECMP in the underlay spreads flows, and both put the same bytes
                       ("net.ipv6.seg6_flowlabel", "1"),
                       ("net.ipv6.conf.default.seg6_enabled", "1"),
                       ("net.ipv6.conf.lo.seg6_enabled", "1"))


def _has_conf(dev: str) -> bool:
    return os.path.exists(f"/proc/sys/net/ipv4/conf/{dev}")


def sysctls(st: NodeState, datapath: str | None,
            has_conf: Callable[[str], bool] = _has_conf) -> list[tuple[str, str]]:
    """The sysctls this node state needs, in the order they are written."""
    kernel_srv6 = st.srv6_enabled and datapath == "kernel"
    settings = list(BASE_SYSCTLS)
    if kernel_srv6:
        settings += KERNEL_SRV6_SYSCTLS
    for dev in (st.uplink_device(u.tor) for u in st.uplinks):
        if not has_conf(dev):
            continue  # reported elsewhere as a missing uplink
        settings.append((f"net.ipv4.conf.{dev}.rp_filter", "0"))
        if kernel_srv6:
            settings.append((f"net.ipv6.conf.{dev}.seg6_enabled", "1"))
    return settings


def apply(kernel: KernelAdapter, st: NodeState, datapath: str | None, node_file: str, *,
          has_conf: Callable[[str], bool] = _has_conf) -> list[str]:
    """Apply the settings; returns what failed, in words (the rest is still applied)."""
    errors: list[str] = []
    for key, value in sysctls(st, datapath, has_conf):
        err = kernel.set_sysctl(key, value)
        if err:
            errors.append(f"sysctl {err}")
    if st.srv6_enabled and datapath == "kernel":
        try:
            kernel.ensure_sid_device(reconcile.SID_DEVICE)  # seg6local routes point at it
            src = st.source_address
            if src is not None and kernel.tunsrc() != src:
                kernel.set_tunsrc(src)
        except AdapterError as exc:
            errors.append(str(exc))
    nf = NodeFile(st.node, tuple(str(b) for b in st.ipv4_blocks),
                  tuple(str(b) for b in st.ipv6_blocks), st.mtu,
                  route_protocol=ROUTE_PROTOCOL)
    try:
        write_atomic(node_file, nf.to_json())
    except OSError as exc:
        errors.append(f"cannot write node file {node_file}: {exc.strerror}")
    return errors
