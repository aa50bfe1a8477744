"""The verbs' entry points and what they share: veth names, pools, netlink sockets, netns.

Each verb lives in its own module (`verb_add`, `verb_del`, `verb_check`, `verb_gc`,
`verb_status`), imported only when it runs: an exec'd plugin loads one verb, not five. Each
takes the parsed Env and NetConf and returns the result object (or None), or raises CniError.
The JSON edge lives in cni.main.

`host_netlink`, `netns_netlink` and `write_sysctl` are the verbs' only ways to the kernel:
the unit tests put an in-memory kernel behind them (tests/unit/cni/fakekernel.py).
"""

from __future__ import annotations

import os

from cni import ipam
from cni import netlink as nl
from cni.config import (
    GATEWAY_V4,
    GATEWAY_V6,
    LEGACY_POD_ROUTE_PROTOCOL,
    Env,
    NetConf,
    Range,
    make_range,
    read_node_file,
)
from cni.errors import INVALID_ENV, NETLINK, NOT_AVAILABLE, CniError
from flatroute import CNI_ROUTE_PROTOCOL

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any

    from cni.store import Store

VETH_PREFIX = "flr"
_HEX = frozenset("0123456789abcdef")


# --- entry points ----------------------------------------------------------------------------

def cmd_add(env: Env, conf: NetConf, store: Store | None = None) -> dict[str, Any]:
    from cni import verb_add

    return verb_add.cmd_add(env, conf, store)


def cmd_del(env: Env, conf: NetConf, store: Store | None = None) -> None:
    from cni import verb_del

    verb_del.cmd_del(env, conf, store)


def cmd_check(env: Env, conf: NetConf, store: Store | None = None) -> None:
    from cni import verb_check

    verb_check.cmd_check(env, conf, store)


def cmd_gc(env: Env, conf: NetConf, store: Store | None = None) -> None:
    from cni import verb_gc

    verb_gc.cmd_gc(env, conf, store)


def cmd_status(env: Env, conf: NetConf, store: Store | None = None) -> None:
    from cni import verb_status

    verb_status.cmd_status(env, conf, store)


# --- shared ------------------------------------------------------------------------------------

def veth_name(container_id: str, ifname: str) -> str:
    """Deterministic host-side name: 'flr' + 12 hex digits of FNV-1a 64 (15 characters)."""
    h = 0xCBF29CE484222325
    for b in f"{container_id}\0{ifname}".encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{VETH_PREFIX}{h:016x}"[:15]


def is_our_veth(name: str) -> bool:
    return len(name) == 15 and name.startswith(VETH_PREFIX) and set(name[3:]) <= _HEX


class Pools:
    """Where addresses come from and what the datapath looks like, for this ADD."""

    __slots__ = ("gw4", "gw6", "mtu", "protocol", "rangesets")

    def __init__(self, rangesets: list[list[Range]], mtu: int, gw4: str, gw6: str,
                 protocol: int) -> None:
        self.rangesets = rangesets
        self.mtu = mtu
        self.gw4 = gw4
        self.gw6 = gw6
        self.protocol = protocol


def pools(conf: NetConf) -> Pools:
    if conf.ranges is not None or conf.delegated:
        return Pools(conf.ranges or [], conf.mtu or 1500, GATEWAY_V4, GATEWAY_V6,
                     conf.route_protocol or CNI_ROUTE_PROTOCOL)
    node = read_node_file(conf.node_file)
    sets: list[list[Range]] = []
    for version, blocks in ((4, node.blocks[0]), (6, node.blocks[1])):
        rset: list[Range] = []
        for i, block in enumerate(blocks):
            where = f"{conf.node_file}: podBlocks.ipv{version}[{i}]"
            try:
                r = make_range(block, where=where)
            except CniError as exc:
                raise CniError(NOT_AVAILABLE, exc.msg) from None
            if r.version != version:
                raise CniError(NOT_AVAILABLE, f"{where}: {block} is not IPv{version}")
            rset.append(r)
        if rset:
            sets.append(rset)
    if not sets:
        raise CniError(NOT_AVAILABLE, f"{conf.node_file}: no pod block assigned to this node yet")
    return Pools(sets, conf.mtu or node.mtu, node.gateway_v4, node.gateway_v6,
                 conf.route_protocol or node.pod_route_protocol)


def pod_route_protocols(conf: NetConf) -> frozenset[int]:
    """Every protocol a pod's host route of ours may carry: the one ADD writes now, and the
    speaker's, which plugins before CNI_ROUTE_PROTOCOL wrote (pods made before an upgrade).
    Only ever matched on a pod's own veth."""
    protos = {LEGACY_POD_ROUTE_PROTOCOL, conf.route_protocol or CNI_ROUTE_PROTOCOL}
    if conf.route_protocol is None and conf.ranges is None and not conf.delegated:
        try:  # noqa: SIM105 - contextlib costs start-up time
            protos.add(read_node_file(conf.node_file).pod_route_protocol)
        except CniError:
            pass  # GC needs no node file
    return frozenset(protos)


def open_store(conf: NetConf) -> Store:
    return ipam.FileStore(conf.data_dir, conf.name, conf.lock_timeout)


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CniError(INVALID_ENV, f"CNI_NETNS {path} cannot be opened",
                       exc.strerror or "") from None


def netns_netlink(pod_fd: int, netns: str) -> nl.Netlink:
    """A netlink socket bound to the pod netns; this process returns to its own netns."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            nl.setns(pod_fd)
        except OSError as exc:
            raise CniError(INVALID_ENV, f"CNI_NETNS {netns} is not a network namespace",
                           exc.strerror or "") from None
        try:
            return nl.Netlink()
        finally:
            nl.setns(here)
    finally:
        os.close(here)


def host_netlink() -> nl.Netlink:
    """A netlink socket in this process's network namespace (the node's)."""
    return nl.Netlink()


def write_sysctl(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def netlink_error(exc: nl.NetlinkError) -> CniError:
    return CniError(NETLINK, f"kernel refused to {exc.what}", exc.strerror or "")


